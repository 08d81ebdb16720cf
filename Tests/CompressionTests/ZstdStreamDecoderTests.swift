import CZstd
import Compression
import Foundation
import TestSupport
import XCTest

/// Streaming zstd decoding of files in bounded chunks: round trips at any chunk size, frames
/// back to back, truncation at every cut, corrupt data, and the window limit.
final class ZstdStreamDecoderTests: XCTestCase {
  private func file(_ bytes: [UInt8]) throws -> String {
    try temporaryFile(holding: bytes, suffix: ".zst")
  }

  private func compress(_ bytes: [UInt8], level: Int32 = 3) throws -> [UInt8] {
    let writer = try ZstdStream.Writer(level: level)
    return try writer.compress(bytes) + writer.finish()
  }

  private func readAll(_ path: String, readSize: Int, chunk: Int) throws -> [UInt8] {
    let reader = try ChunkedFileReader(path: path, readSize: readSize)
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: chunk)
    while true {
      let n = try buffer.withUnsafeMutableBytes { try reader.read(into: $0) }
      if n == 0 { break }
      XCTAssertLessThanOrEqual(n, chunk)
      out += buffer[..<n]
    }
    XCTAssertEqual(try buffer.withUnsafeMutableBytes { try reader.read(into: $0) }, 0)
    return out
  }

  /// Text-like data that compresses well but not to nothing.
  private func sample(_ count: Int) -> [UInt8] {
    var state: UInt32 = 12345
    return (0..<count).map { i in
      state = state &* 1_103_515_245 &+ 12345
      return i % 5 == 0 ? UInt8(truncatingIfNeeded: state >> 24) : UInt8(ascii: "a") + UInt8(i % 7)
    }
  }

  func testRoundTripsAtAnyChunkSize() throws {
    let data = sample(300_000)
    let compressed = try compress(data)
    let zstdPath = try file(compressed)
    let plainPath = try file(data)
    for (readSize, chunk) in [(1, 1 << 16), (7, 3), (4096, 1), (256 << 10, 1 << 20), (100, 100)]
    where !(readSize == 1 && chunk < 100) {
      XCTAssertEqual(try readAll(zstdPath, readSize: readSize, chunk: chunk), data)
      XCTAssertEqual(try readAll(plainPath, readSize: readSize, chunk: chunk), data)
    }
    XCTAssertTrue(try ChunkedFileReader(path: zstdPath).isCompressed)
    XCTAssertFalse(try ChunkedFileReader(path: plainPath).isCompressed)
  }

  func testFramesBackToBackAndShortFiles() throws {
    let a = sample(5000)
    let b = Array(sample(7000).reversed())
    let path = try file(try compress(a) + compress([]) + compress(b))
    XCTAssertEqual(try readAll(path, readSize: 13, chunk: 17), a + b)
    for short in [[], [0x28], [0x28, 0xB5, 0x2F]] as [[UInt8]] {
      XCTAssertEqual(try readAll(try file(short), readSize: 1, chunk: 1), short)
    }
  }

  func testTruncationIsAnErrorAtEveryCut() throws {
    let compressed = try compress(sample(2000))
    for cut in 4..<compressed.count {
      let path = try file(Array(compressed[..<cut]))
      XCTAssertThrowsError(try readAll(path, readSize: 5, chunk: 64), "cut at \(cut)") { error in
        XCTAssertTrue("\(error)".contains("truncated stream"), "\(error)")
      }
      try FileManager.default.removeItem(atPath: path)
    }
  }

  func testGarbageAfterAFrameIsAnError() throws {
    let path = try file(try compress(sample(1000)) + [1, 2, 3, 4, 5, 6, 7, 8])
    XCTAssertThrowsError(try readAll(path, readSize: 64, chunk: 64))
  }

  func testAWindowOverTheLimitIsRefusedWithoutDecoding() throws {
    // A frame asking for a 128 MiB window, as a hostile or `--long` file would.
    let context = try XCTUnwrap(ZSTD_createCCtx())
    defer { ZSTD_freeCCtx(context) }
    XCTAssertEqual(ZSTD_isError(ZSTD_CCtx_setParameter(context, ZSTD_c_windowLog, 27)), 0)
    let data = sample(1 << 20)
    var compressed = [UInt8](repeating: 0, count: ZSTD_compressBound(data.count))
    // Input first, then the end: the content size stays unknown, so the header keeps the window.
    let size = compressed.withUnsafeMutableBytes { out in
      data.withUnsafeBytes { input in
        var inBuffer = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
        var outBuffer = ZSTD_outBuffer(dst: out.baseAddress, size: out.count, pos: 0)
        _ = ZSTD_compressStream2(context, &outBuffer, &inBuffer, ZSTD_e_continue)
        var empty = ZSTD_inBuffer(src: nil, size: 0, pos: 0)
        while ZSTD_compressStream2(context, &outBuffer, &empty, ZSTD_e_end) != 0 {}
        return outBuffer.pos
      }
    }
    compressed.removeSubrange(size...)
    let path = try file(compressed)
    XCTAssertThrowsError(try readAll(path, readSize: 1 << 16, chunk: 1 << 16)) { error in
      XCTAssertTrue("\(error)".contains("16777216-byte limit"), "\(error)")
    }
  }
}
