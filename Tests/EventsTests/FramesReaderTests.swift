import Firehose
import Foundation
import SyntheticFirehose
import TestSupport
import XCTest

/// `FramesReader` streams frames files in bounded chunks: frames split across reads at every
/// offset, hostile declared lengths, damaged zstd, empty files.
final class FramesReaderTests: XCTestCase {
  private func file(_ bytes: [UInt8]) throws -> String {
    try temporaryFile(holding: bytes, suffix: ".frames")
  }

  private struct Read: Equatable {
    var frames: [[UInt8]]
    var tail: Int
    var oversized: Int
  }

  private func read(
    _ path: String, bufferSize: Int = 1 << 20, readSize: Int = 256 << 10,
    maxFrameBytes: Int = FramesReader.defaultMaxFrameBytes
  ) throws -> Read {
    let reader = try FramesReader(
      path: path, bufferSize: bufferSize, readSize: readSize, maxFrameBytes: maxFrameBytes)
    var frames: [[UInt8]] = []
    try reader.forEachFrame { frames.append(Array($0)) }
    XCTAssertNil(try reader.next(), "the end stays the end")
    XCTAssertEqual(reader.frames, frames.count)
    return Read(frames: frames, tail: reader.unreadableTailBytes, oversized: reader.oversizedFrames)
  }

  /// Frames of every small size, including empty ones and ones larger than the tiny buffers.
  private let sample: [[UInt8]] = [0, 1, 3, 4, 5, 9, 17, 0, 40, 2].enumerated().map { i, n in
    (0..<n).map { UInt8(truncatingIfNeeded: $0 * 7 + i) }
  }

  func testFramesSplitAcrossReadsAtEveryOffset() throws {
    for pad in 0..<9 {
      // A leading frame of `pad` bytes shifts every later boundary by one more byte.
      let frames = [[UInt8](repeating: 0xAB, count: pad)] + sample
      let path = try file(FramesFile.encode(frames))
      for readSize in 1...9 {
        for bufferSize in [1, 4, 5, 6, 7, 8, 11, 16, 41, 64, 1 << 20] {
          let result = try read(path, bufferSize: bufferSize, readSize: readSize)
          XCTAssertEqual(
            result, Read(frames: frames, tail: 0, oversized: 0),
            "pad \(pad), read size \(readSize), buffer \(bufferSize)")
        }
      }
    }
  }

  func testAPartRecordAtTheEndIsCountedAtEveryCut() throws {
    let whole = FramesFile.encode(sample)
    var offsets: [Int] = [0]
    for frame in sample { offsets.append(offsets.last! + 4 + frame.count) }
    for cut in 0...whole.count {
      let path = try file(Array(whole[..<cut]))
      let complete = offsets.lastIndex { $0 <= cut }!
      for (bufferSize, readSize) in [(4, 1), (7, 3), (1 << 20, 256 << 10)] {
        XCTAssertEqual(
          try read(path, bufferSize: bufferSize, readSize: readSize),
          Read(frames: Array(sample[..<complete]), tail: cut - offsets[complete], oversized: 0),
          "cut at \(cut), buffer \(bufferSize)")
      }
      try FileManager.default.removeItem(atPath: path)
    }
  }

  func testFramesOverTheCapAreSkippedAndCounted() throws {
    let big = [UInt8](repeating: 0x55, count: 30)
    let frames = [sample[2], big, sample[4], big, big, sample[6]]
    let path = try file(FramesFile.encode(frames))
    for (bufferSize, readSize) in [(4, 1), (8, 3), (64, 64), (1 << 20, 256 << 10)] {
      XCTAssertEqual(
        try read(path, bufferSize: bufferSize, readSize: readSize, maxFrameBytes: 29),
        Read(frames: [sample[2], sample[4], sample[6]], tail: 0, oversized: 3),
        "buffer \(bufferSize)")
    }
    // Exactly at the cap is allowed.
    XCTAssertEqual(try read(path, bufferSize: 4, readSize: 2, maxFrameBytes: 30).oversized, 0)
  }

  func testAnOversizedRecordCutShortIsTrailingBytes() throws {
    var bytes = FramesFile.encode([sample[3]])
    bytes += [100, 0, 0, 0] + [UInt8](repeating: 1, count: 50)
    let path = try file(bytes)
    for bufferSize in [4, 16, 1 << 20] {
      XCTAssertEqual(
        try read(path, bufferSize: bufferSize, readSize: 5, maxFrameBytes: 20),
        Read(frames: [sample[3]], tail: 54, oversized: 0))
    }
  }

  func testAHugeDeclaredLengthAllocatesNothing() throws {
    // 4 GiB − 1 declared, 10 bytes there: over the default 5 MiB cap, so nothing is held.
    var bytes = FramesFile.encode(sample)
    bytes += [0xFF, 0xFF, 0xFF, 0xFF] + [UInt8](repeating: 7, count: 10)
    let path = try file(bytes)
    XCTAssertEqual(try read(path), Read(frames: sample, tail: 14, oversized: 0))
    // 4 MiB, under the cap but past the end: the frame is assembled only from bytes that exist.
    bytes = FramesFile.encode(sample) + [0x00, 0x00, 0x40, 0x00] + [UInt8](repeating: 7, count: 10)
    let path2 = try file(bytes)
    for bufferSize in [4, 1 << 20] {
      XCTAssertEqual(
        try read(path2, bufferSize: bufferSize, readSize: 3),
        Read(frames: sample, tail: 14, oversized: 0))
    }
  }

  func testEmptyFile() throws {
    XCTAssertEqual(try read(try file([])), Read(frames: [], tail: 0, oversized: 0))
    XCTAssertEqual(try read(try file([1, 0])), Read(frames: [], tail: 2, oversized: 0))
  }

  func testZstdFixtureAtTinyChunksMatchesTheWholeFileReader() throws {
    let path = SharedData.projectRoot + "/Fixtures/synthetic-2000.frames.zst"
    let expected = try FramesFile.read(path: path)
    for (bufferSize, readSize) in [(1, 1), (5, 3), (4096, 7), (1 << 20, 256 << 10)] {
      XCTAssertEqual(
        try read(path, bufferSize: bufferSize, readSize: readSize),
        Read(frames: expected.frames, tail: 0, oversized: 0), "buffer \(bufferSize)")
    }
  }

  func testTruncatedZstdThrowsAfterTheWholeFramesBeforeIt() throws {
    let fixture = SharedData.projectRoot + "/Fixtures/synthetic-2000.frames.zst"
    let compressed = try XCTUnwrap(SharedData.read(fixture))
    let expected = try FramesFile.read(path: fixture).frames
    for cut in [4, 5, 20, compressed.count / 3, compressed.count - 1] {
      let path = try file(Array(compressed[..<cut]))
      for (bufferSize, readSize) in [(7, 5), (1 << 20, 256 << 10)] {
        let reader = try FramesReader(path: path, bufferSize: bufferSize, readSize: readSize)
        var frames: [[UInt8]] = []
        XCTAssertThrowsError(try reader.forEachFrame { frames.append(Array($0)) }) { error in
          XCTAssertTrue("\(error)".contains("truncated"), "\(error)")
        }
        XCTAssertLessThan(frames.count, expected.count)
        XCTAssertEqual(frames, Array(expected.prefix(frames.count)), "cut at \(cut)")
      }
    }
  }

  func testCorruptZstdThrows() throws {
    let fixture = SharedData.projectRoot + "/Fixtures/synthetic-2000.frames.zst"
    var compressed = try XCTUnwrap(SharedData.read(fixture))
    for i in stride(from: 200, to: compressed.count, by: 97) { compressed[i] ^= 0x5A }
    let path = try file(compressed)
    XCTAssertThrowsError(try read(path, bufferSize: 64, readSize: 64))
  }

  func testUnreadableFileThrowsWithItsPath() {
    XCTAssertThrowsError(try FramesReader(path: "/nonexistent/frames")) { error in
      XCTAssertEqual(
        "\(error)", "cannot read /nonexistent/frames: No such file or directory")
    }
    XCTAssertThrowsError(try read("/")) { error in
      XCTAssertTrue("\(error)".contains("Is a directory"), "\(error)")
    }
  }
}
