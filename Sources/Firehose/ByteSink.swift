/// A growable run of raw bytes for the hot encoding path.
///
/// It is a plain value over manually managed memory so that writes compile to stores without
/// reference counting or exclusivity checks. Exactly one owner creates it and calls `release()`;
/// copies are only moved (into a local `var` and back), never kept.
public struct ByteSink {
  public private(set) var base: UnsafeMutablePointer<UInt8>
  public var count: Int
  public private(set) var capacity: Int

  public init(capacity: Int = 4096) {
    self.capacity = Swift.max(capacity, 16)
    self.base = .allocate(capacity: self.capacity)
    self.count = 0
  }

  /// Frees the memory. The sink must not be used afterwards.
  public func release() { base.deallocate() }

  public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

  public func array() -> [UInt8] {
    [UInt8](UnsafeBufferPointer(start: base, count: count))
  }

  @inline(__always)
  public mutating func reserve(_ extra: Int) {
    if capacity - count < extra { grow(extra) }
  }

  @inline(never)
  mutating func grow(_ extra: Int) {
    var newCapacity = capacity * 2
    while newCapacity - count < extra { newCapacity *= 2 }
    let newBase = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
    newBase.update(from: base, count: count)
    base.deallocate()
    base = newBase
    capacity = newCapacity
  }

  @inline(__always)
  public mutating func append(_ byte: UInt8) {
    reserve(1)
    base[count] = byte
    count += 1
  }

  @inline(__always)
  public mutating func append(_ pointer: UnsafePointer<UInt8>, count n: Int) {
    reserve(n)
    (base + count).update(from: pointer, count: n)
    count += n
  }

  @inline(__always)
  public mutating func append(_ buffer: UnsafeRawBufferPointer) {
    guard let start = buffer.baseAddress, buffer.count > 0 else { return }
    append(start.assumingMemoryBound(to: UInt8.self), count: buffer.count)
  }

  /// Appends an ASCII literal.
  @inline(__always)
  public mutating func append(_ literal: StaticString) {
    append(literal.utf8Start, count: literal.utf8CodeUnitCount)
  }

  /// Appends the decimal form of a signed integer.
  public mutating func append(decimal value: Int64) {
    if value < 0 {
      append(UInt8(ascii: "-"))
      append(decimal: UInt64(bitPattern: 0 &- value))  // magnitude, exact also for Int64.min
    } else {
      append(decimal: UInt64(value))
    }
  }

  /// Appends the decimal form of an unsigned integer.
  public mutating func append(decimal value: UInt64) {
    reserve(20)
    count += Self.writeDecimal(value, to: base + count)
  }

  /// Writes the decimal form of `value` at `start` (room for 20 bytes); returns its length.
  public static func writeDecimal(_ value: UInt64, to start: UnsafeMutablePointer<UInt8>) -> Int {
    var digitCount = 1
    var probe = value
    while probe >= 100 {
      probe /= 100
      digitCount += 2
    }
    if probe >= 10 { digitCount += 1 }
    // Two digits per division, from a table of "00"…"99".
    let table: StaticString = """
      00010203040506070809101112131415161718192021222324252627282930313233343536373839\
      40414243444546474849505152535455565758596061626364656667686970717273747576777879\
      8081828384858687888990919293949596979899
      """
    let pairs = table.utf8Start
    var rest = value
    var position = digitCount
    while rest >= 100 {
      let pair = Int(truncatingIfNeeded: rest % 100) * 2
      rest /= 100
      position -= 2
      start[position] = pairs[pair]
      start[position + 1] = pairs[pair + 1]
    }
    if rest >= 10 {
      let pair = Int(truncatingIfNeeded: rest) * 2
      start[position - 2] = pairs[pair]
      start[position - 1] = pairs[pair + 1]
    } else {
      start[position - 1] = UInt8(truncatingIfNeeded: rest) &+ 48
    }
    return digitCount
  }
}
