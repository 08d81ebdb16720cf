import CZstd
import Compression
import Foundation
import TestSupport
import XCTest

/// Event compression with both dictionaries: round trips, frame headers, a third-party decoder,
/// wrong dictionaries, damage and bombs.
final class CompressionTests: XCTestCase {
  static let defaultPath = SharedData.defaultDictionaryPath

  private func defaultDictionary() throws -> ZstdDictionary {
    try ZstdDictionary(path: Self.defaultPath)
  }

  private func v1Dictionary() throws -> ZstdDictionary {
    guard let path = SharedData.path("dictionaries/jetstream-v1.zdict") else {
      throw XCTSkip(SharedData.skipMessage)
    }
    return try ZstdDictionary(path: path)
  }

  private func lines(_ path: String) throws -> [[UInt8]] {
    try XCTUnwrap(SharedData.read(path)).split(separator: UInt8(ascii: "\n")).map(Array.init)
  }

  private func captureEvents() throws -> [[UInt8]] {
    guard let path = SharedData.path("corpus/jetstream-v1-capture/expected_v1.jsonl") else {
      throw XCTSkip(SharedData.skipMessage)
    }
    return try lines(path)
  }

  private func fixtureEvents() throws -> [[UInt8]] {
    try lines(SharedData.projectRoot + "/Fixtures/synthetic-2000.expected.jsonl")
  }

  /// The frame header fields a client relies on (RFC 8878 §3.1.1.1).
  struct FrameHeader {
    var dictionaryID: UInt32?
    var contentSize: UInt64?
    var checksum: Bool
  }

  static func header(_ frame: [UInt8]) -> FrameHeader? {
    guard frame.count >= 6, frame.starts(with: [0x28, 0xB5, 0x2F, 0xFD]) else { return nil }
    let descriptor = frame[4]
    let singleSegment = descriptor & 0x20 != 0
    var offset = 5 + (singleSegment ? 0 : 1)
    let idBytes = [0, 1, 2, 4][Int(descriptor & 3)]
    var id: UInt32? = nil
    if idBytes > 0 {
      id = (0..<idBytes).reduce(0) { $0 | UInt32(frame[offset + $1]) << (8 * UInt32($1)) }
      offset += idBytes
    }
    let sizeFlag = Int(descriptor >> 6)
    let sizeBytes = sizeFlag == 0 ? (singleSegment ? 1 : 0) : [1, 2, 4, 8][sizeFlag]
    var size: UInt64? = nil
    if sizeBytes > 0 {
      size = (0..<sizeBytes).reduce(0) { $0 | UInt64(frame[offset + $1]) << (8 * UInt64($1)) }
      if sizeBytes == 2 { size! += 256 }
    }
    return FrameHeader(dictionaryID: id, contentSize: size, checksum: descriptor & 0x04 != 0)
  }

  func testDictionariesLoadWithTheirIDs() throws {
    let ours = try defaultDictionary()
    XCTAssertTrue(
      (32_768...2_147_483_647).contains(ours.id), "Contrail's ID is in the private range")
    let v1 = try v1Dictionary()
    XCTAssertEqual(v1.id, 1_612_007_021)
    XCTAssertEqual(v1.bytes.count, 112_640)
    XCTAssertNotEqual(ours.id, v1.id)
  }

  func testRawAndInvalidDictionariesAreRefused() throws {
    XCTAssertThrowsError(try ZstdDictionary(bytes: Array("raw content dictionary".utf8))) { error in
      XCTAssertTrue("\(error)".contains("raw-content"), "\(error)")
    }
    var zeroID = try defaultDictionary().bytes
    for i in 4..<8 { zeroID[i] = 0 }
    XCTAssertThrowsError(try ZstdDictionary(bytes: zeroID)) {
      XCTAssertTrue("\($0)".contains("ID is 0"))
    }
    XCTAssertThrowsError(try ZstdDictionary(path: "/nonexistent.zdict")) {
      XCTAssertTrue("\($0)".contains("No such file or directory"), "\($0)")
    }
  }

  private func assertRoundTrips(_ events: [[UInt8]], _ dictionary: ZstdDictionary) throws {
    let compressor = try EventCompressor(dictionary: dictionary)
    let decompressor = try EventDecompressor(dictionary: dictionary)
    for event in events {
      let frame = try compressor.compress(event)
      let header = try XCTUnwrap(Self.header(frame))
      XCTAssertEqual(header.dictionaryID, dictionary.id)
      XCTAssertEqual(header.contentSize, UInt64(event.count), "content size is always written")
      XCTAssertFalse(header.checksum)
      XCTAssertEqual(try decompressor.decompress(frame), event)
    }
  }

  func testCaptureEventsRoundTripWithBothDictionaries() throws {
    let events = try captureEvents()
    XCTAssertEqual(events.count, 152)
    try assertRoundTrips(events, try defaultDictionary())
    try assertRoundTrips(events, try v1Dictionary())
  }

  func testGeneratedEventsRoundTripWithBothDictionaries() throws {
    let events = try fixtureEvents()
    try assertRoundTrips(events, try defaultDictionary())
    if let path = SharedData.path("dictionaries/jetstream-v1.zdict") {
      try assertRoundTrips(events, try ZstdDictionary(path: path))
    }
  }

  func testTinyEventsStillCarryTheContentSize() throws {
    let compressor = try EventCompressor(dictionary: try defaultDictionary())
    for text in ["", "{}", #"{"did":"did:plc:x"}"#] {
      let header = try XCTUnwrap(Self.header(try compressor.compress(Array(text.utf8))))
      XCTAssertEqual(header.contentSize, UInt64(text.utf8.count))
    }
  }

  func testChecksumIsOptional() throws {
    let dictionary = try defaultDictionary()
    let compressor = try EventCompressor(dictionary: dictionary, checksum: true)
    let event = try fixtureEvents()[0]
    let frame = try compressor.compress(event)
    XCTAssertEqual(Self.header(frame)?.checksum, true)
    XCTAssertEqual(try EventDecompressor(dictionary: dictionary).decompress(frame), event)
  }

  /// The `zstd` command (Debian's) decodes every frame with the dictionary, and refuses without it.
  func testThirdPartyDecoderReadsTheFrames() throws {
    guard
      let zstd = ["/usr/bin/zstd", "/usr/local/bin/zstd"].first(
        where: FileManager.default.isExecutableFile)
    else {
      // A failure, not a skip: scripts/setup-deps installs it.
      return XCTFail("the zstd command is not installed (apt-get install zstd)")
    }
    var checks: [(String, ZstdDictionary, [[UInt8]])] = [
      (Self.defaultPath, try defaultDictionary(), try fixtureEvents())
    ]
    if let v1 = SharedData.path("dictionaries/jetstream-v1.zdict") {
      checks.append((v1, try ZstdDictionary(path: v1), try captureEvents()))
    }
    for (path, dictionary, events) in checks {
      let compressor = try EventCompressor(dictionary: dictionary)
      let frames = try events.prefix(300).map { try compressor.compress($0) }
      // Concatenated frames decode to the concatenated events.
      let file = try temporaryFile(holding: frames.flatMap { $0 }, suffix: ".zst")
      let decoded = try run(zstd, ["-d", "-q", "-c", "-D", path, file])
      XCTAssertEqual(decoded.status, 0)
      XCTAssertTrue(
        decoded.output == Data(events.prefix(300).flatMap { $0 }),
        "\(path): zstd -d -D decodes every frame")
      let withoutDictionary = try run(zstd, ["-d", "-q", "-c", file])
      XCTAssertNotEqual(withoutDictionary.status, 0, "decoding without the dictionary must fail")
    }
  }

  private func run(_ tool: String, _ arguments: [String]) throws -> (status: Int32, output: Data) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: tool)
    process.arguments = arguments
    let out = Pipe()
    process.standardOutput = out
    process.standardError = FileHandle.nullDevice
    try process.run()
    let output = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, output)
  }

  func testWrongDictionaryFailsCleanly() throws {
    let v1 = try v1Dictionary()
    let frame = try EventCompressor(dictionary: v1).compress(try captureEvents()[0])
    let ours = try EventDecompressor(dictionary: try defaultDictionary())
    XCTAssertThrowsError(try ours.decompress(frame)) { error in
      XCTAssertEqual(
        "\(error)",
        "the frame needs dictionary 1612007021, but this decoder has \(ours.dictionary.id)")
    }
  }

  func testDamagedFramesAreRejectedWithoutCrashing() throws {
    let dictionary = try defaultDictionary()
    let compressor = try EventCompressor(dictionary: dictionary, checksum: true)
    let decompressor = try EventDecompressor(dictionary: dictionary)
    var random = SystemRandomNumberGenerator()
    for event in try fixtureEvents().prefix(40) {
      let frame = try compressor.compress(event)
      for cut in 0..<frame.count {
        XCTAssertThrowsError(try decompressor.decompress(Array(frame[..<cut])), "cut at \(cut)")
      }
      for _ in 0..<50 {
        var damaged = frame
        let bit = Int.random(in: 0..<(frame.count * 8), using: &random)
        damaged[bit / 8] ^= 1 << UInt8(bit % 8)
        // With the checksum on, any damage that still decodes must be caught; never a crash.
        if let decoded = try? decompressor.decompress(damaged) { XCTAssertEqual(decoded, event) }
      }
    }
    XCTAssertThrowsError(try decompressor.decompress([UInt8]())) {
      XCTAssertEqual("\($0)", "not a zstd frame")
    }
  }

  func testDecompressionBombsAreRejected() throws {
    let dictionary = try defaultDictionary()
    let decompressor = try EventDecompressor(dictionary: dictionary, maxSize: 1 << 20)
    let zeros = [UInt8](repeating: 0, count: 2 << 20)
    // A frame that declares its 2 MiB.
    let declared = try EventCompressor(dictionary: dictionary).compress(zeros)
    XCTAssertLessThan(declared.count, 1_000)
    XCTAssertThrowsError(try decompressor.decompress(declared)) {
      XCTAssertTrue("\($0)".contains("declares 2097152 bytes"), "\($0)")
    }
    // The same without a content size: decoded as a bounded stream and stopped at the limit.
    let streamed = try Self.compressWithoutContentSize(zeros, dictionary)
    XCTAssertNil(Self.header(streamed)?.contentSize)
    XCTAssertThrowsError(try decompressor.decompress(streamed)) {
      XCTAssertTrue("\($0)".contains("more than the 1048576-byte limit"), "\($0)")
    }
    // And a small frame without a content size decodes fine.
    let event = try fixtureEvents()[1]
    XCTAssertEqual(
      try decompressor.decompress(try Self.compressWithoutContentSize(event, dictionary)), event)
  }

  /// What other servers emit: a dictionary frame without Frame_Content_Size.
  static func compressWithoutContentSize(_ input: [UInt8], _ dictionary: ZstdDictionary) throws
    -> [UInt8]
  {
    let context = ZSTD_createCCtx()
    defer { ZSTD_freeCCtx(context) }
    _ = ZSTD_CCtx_setParameter(context, ZSTD_c_contentSizeFlag, 0)
    _ = dictionary.bytes.withUnsafeBytes {
      ZSTD_CCtx_loadDictionary(context, $0.baseAddress, $0.count)
    }
    var output = [UInt8](repeating: 0, count: ZSTD_compressBound(input.count) + 64)
    var inBuffer = input.withUnsafeBytes {
      ZSTD_inBuffer(src: $0.baseAddress, size: $0.count, pos: 0)
    }
    let written = try input.withUnsafeBytes { source -> Int in
      inBuffer.src = source.baseAddress
      return try output.withUnsafeMutableBytes { out -> Int in
        var outBuffer = ZSTD_outBuffer(dst: out.baseAddress, size: out.count, pos: 0)
        let result = ZSTD_compressStream2(context, &outBuffer, &inBuffer, ZSTD_e_end)
        guard ZSTD_isError(result) == 0, result == 0 else {
          throw StreamCompressionFailed()  // a helper that fails fails the test
        }
        return outBuffer.pos
      }
    }
    return Array(output[..<written])
  }
}

private struct StreamCompressionFailed: Error {}
