/// CRC-32C (Castagnoli), slicing-by-8, for record checksums.
enum CRC32C {
  private static let tables: [[UInt32]] = {
    var tables = [[UInt32]](repeating: [UInt32](repeating: 0, count: 256), count: 8)
    for i in 0..<256 {
      var c = UInt32(i)
      for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
      tables[0][i] = c
    }
    for i in 0..<256 {
      for t in 1..<8 {
        tables[t][i] = (tables[t - 1][i] >> 8) ^ tables[0][Int(tables[t - 1][i] & 0xFF)]
      }
    }
    return tables
  }()

  /// One flat copy of the tables, read through a pointer on the hot path.
  nonisolated(unsafe) private static let flat: UnsafeMutablePointer<UInt32> = {
    let pointer = UnsafeMutablePointer<UInt32>.allocate(capacity: 8 * 256)
    for t in 0..<8 { for i in 0..<256 { pointer[t * 256 + i] = tables[t][i] } }
    return pointer
  }()

  static func checksum(_ data: UnsafeRawBufferPointer) -> UInt32 {
    let t = flat
    var crc: UInt32 = 0xFFFF_FFFF
    var i = 0
    let n = data.count
    while i + 8 <= n {
      let word = data.loadUnaligned(fromByteOffset: i, as: UInt64.self).littleEndian ^ UInt64(crc)
      crc =
        t[7 * 256 + Int(word & 0xFF)] ^ t[6 * 256 + Int((word >> 8) & 0xFF)]
        ^ t[5 * 256 + Int((word >> 16) & 0xFF)] ^ t[4 * 256 + Int((word >> 24) & 0xFF)]
        ^ t[3 * 256 + Int((word >> 32) & 0xFF)] ^ t[2 * 256 + Int((word >> 40) & 0xFF)]
        ^ t[1 * 256 + Int((word >> 48) & 0xFF)] ^ t[Int(word >> 56)]
      i += 8
    }
    while i < n {
      crc = t[Int((crc ^ UInt32(data[i])) & 0xFF)] ^ (crc >> 8)
      i += 1
    }
    return ~crc
  }
}
