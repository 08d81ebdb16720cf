/// Content identifiers: binary parsing and the canonical string form (CIDv1 as `b` + base32-lower,
/// CIDv0 as base58btc `Qm…`).
public enum CID {
  /// The length of the binary CID at the start of `bytes`, or nil if none parses there.
  /// CIDv0 is a bare sha2-256 multihash (`12 20` + 32 bytes); CIDv1 is
  /// `version=1, codec, multihash code, digest length, digest`, every varint minimal.
  public static func length(_ bytes: UnsafeRawBufferPointer) -> Int? {
    if bytes.count >= 2 && bytes[0] == 0x12 && bytes[1] == 0x20 {
      return bytes.count >= 34 ? 34 : nil
    }
    // The usual CIDv1: version 1, codec, hash code and digest length one byte each (a one-byte
    // varint is always minimal).
    if bytes.count >= 4 && bytes[0] == 1 && (bytes[1] | bytes[2] | bytes[3]) & 0x80 == 0 {
      let digestLength = Int(bytes[3])
      return digestLength <= bytes.count - 4 ? 4 + digestLength : nil
    }
    var offset = 0
    for index in 0..<4 {
      guard let (value, length) = Varint.read(bytes, at: offset),
        Varint.isMinimal(bytes, at: offset, length: length)
      else { return nil }
      offset += length
      if index == 0 && value != 1 { return nil }  // version
      if index == 3 {  // digest length
        guard value <= bytes.count - offset else { return nil }
        return offset + value
      }
    }
    return nil
  }

  /// Whether `bytes` is exactly one binary CID.
  public static func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
    length(bytes) == bytes.count
  }

  /// Appends the string form of a binary CID (which must be valid).
  public static func appendString(_ bytes: UnsafeRawBufferPointer, to out: inout ByteSink) {
    if bytes.count == 34 && bytes[0] == 0x12 && bytes[1] == 0x20 {
      Multibase.appendBase58(bytes, to: &out)
    } else {
      out.append(UInt8(ascii: "b"))
      Base32.lowercase.encode(bytes, to: &out)
    }
  }

  /// The binary form of a CID string (`b…` base32-lower CIDv1 or `Qm…` base58btc CIDv0).
  public static func parse(_ text: UnsafeRawBufferPointer) -> [UInt8]? {
    let decoded: [UInt8]?
    if text.count == 46 && text[0] == UInt8(ascii: "Q") && text[1] == UInt8(ascii: "m") {
      decoded = Multibase.decodeBase58(text)
    } else if text.first == UInt8(ascii: "b") {
      decoded = Base32.lowercase.decode(text.dropFirst())
    } else {
      decoded = nil
    }
    guard let bytes = decoded else { return nil }
    let valid = bytes.withUnsafeBytes { raw in
      // A v0 string must decode to v0 bytes, and a `b` string to v1 bytes.
      isValid(raw) && (text[0] == UInt8(ascii: "b")) == (raw.count != 34 || raw[0] != 0x12)
    }
    return valid ? bytes : nil
  }
}
