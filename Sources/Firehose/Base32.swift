/// Base32 in a given alphabet: five bits a character, most significant first, no padding.
///
/// atproto uses two alphabets: RFC 4648's in lowercase for CIDv1 strings (multibase `b`) and
/// `did:plc` identifiers, and the sortable one (the same characters in ASCII order) for TIDs.
public struct Base32: Sendable {
  /// RFC 4648's alphabet, lowercase: CIDv1 strings and `did:plc` identifiers.
  public static let lowercase = Base32("abcdefghijklmnopqrstuvwxyz234567")
  /// The sortable alphabet (ASCII order, so strings sort as their values): TIDs.
  public static let sortable = Base32("234567abcdefghijklmnopqrstuvwxyz")

  /// The character for each 5-bit value.
  @usableFromInline let digits: [UInt8]
  /// Each byte's 5-bit value, 0xFF when the byte is not in the alphabet.
  @usableFromInline let values: [UInt8]

  /// `alphabet`: 32 distinct ASCII characters, the character for 0 first.
  public init(_ alphabet: String) {
    digits = Array(alphabet.utf8)
    precondition(digits.count == 32 && Set(digits).count == 32, "a base32 alphabet has 32 bytes")
    var values = [UInt8](repeating: 0xFF, count: 256)
    for (value, character) in digits.enumerated() { values[Int(character)] = UInt8(value) }
    self.values = values
  }

  /// The character for the low five bits of `value`.
  @inlinable
  public func digit(_ value: UInt64) -> UInt8 { digits[Int(truncatingIfNeeded: value & 31)] }

  /// Whether every byte of `text` is a character of the alphabet.
  @inlinable
  public func isEncoded(_ text: some Sequence<UInt8>) -> Bool {
    values.withUnsafeBufferPointer { values in text.allSatisfy { values[Int($0)] != 0xFF } }
  }

  /// Encodes `data`, passing each character to `emit`; the last character's spare low bits are
  /// zero. Always inlined, so that `emit` is too.
  @inlinable @inline(__always)
  public func encode(_ data: UnsafeRawBufferPointer, _ emit: (UInt8) -> Void) {
    digits.withUnsafeBufferPointer { digits in
      var i = 0
      // Whole groups: 5 bytes → 8 characters.
      while i + 5 <= data.count {
        var group: UInt64 = 0
        for k in 0..<5 { group = group << 8 | UInt64(data[i + k]) }
        for k in (0..<8).reversed() {
          emit(digits[Int(truncatingIfNeeded: (group &>> (5 * k)) & 31)])
        }
        i += 5
      }
      var buffer: UInt64 = 0
      var bits = 0
      while i < data.count {
        buffer = buffer << 8 | UInt64(data[i])
        bits += 8
        i += 1
        while bits >= 5 {
          bits -= 5
          emit(digits[Int(truncatingIfNeeded: (buffer &>> bits) & 31)])
        }
      }
      if bits > 0 { emit(digits[Int(truncatingIfNeeded: (buffer &<< (5 - bits)) & 31)]) }
    }
  }

  /// Encodes `data` onto the end of `out`.
  public func encode(_ data: UnsafeRawBufferPointer, to out: inout ByteSink) {
    let length = (data.count * 8 + 4) / 5
    out.reserve(length)
    // Room is reserved: write the characters in place instead of appending one at a time.
    var cursor = out.base + out.count
    encode(data) {
      cursor.pointee = $0
      cursor += 1
    }
    out.count += length
  }

  /// Decodes `text` onto the end of `out`; false on a character outside the alphabet or a length
  /// no encoding has (a whole character left over), with `out` then holding part of the bytes.
  @inlinable
  public func decode(_ text: some Sequence<UInt8>, into out: inout [UInt8]) -> Bool {
    values.withUnsafeBufferPointer { values in
      var buffer: UInt64 = 0
      var bits = 0
      for c in text {
        let value = values[Int(c)]
        guard value != 0xFF else { return false }
        buffer = buffer << 5 | UInt64(value)
        bits += 5
        if bits >= 8 {
          bits -= 8
          out.append(UInt8(truncatingIfNeeded: buffer &>> bits))
        }
      }
      return bits < 5
    }
  }

  /// The bytes `text` encodes; nil on a character outside the alphabet or a bad length.
  public func decode(_ text: some Sequence<UInt8>) -> [UInt8]? {
    var out: [UInt8] = []
    return decode(text, into: &out) ? out : nil
  }
}
