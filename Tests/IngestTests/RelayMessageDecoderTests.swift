import NIOCore
import NIOEmbedded
import XCTest

@testable import Ingest

/// The relay's websocket framing: whole messages up to the limit, longer ones skipped as they
/// arrive (never held) and reported, control frames between fragments, every length checked.
final class RelayMessageDecoderTests: XCTestCase {
  private func frame(_ opcode: UInt8, _ payload: [UInt8], fin: Bool = true, mask: [UInt8]? = nil)
    -> [UInt8]
  {
    var out: [UInt8] = [(fin ? 0x80 : 0) | opcode]
    let maskBit: UInt8 = mask == nil ? 0 : 0x80
    if payload.count < 126 {
      out.append(maskBit | UInt8(payload.count))
    } else if payload.count <= 0xFFFF {
      out += [maskBit | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
    } else {
      out.append(maskBit | 127)
      for shift in stride(from: 56, through: 0, by: -8) {
        out.append(UInt8(truncatingIfNeeded: payload.count >> shift))
      }
    }
    if let mask {
      out += mask
      out += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
    } else {
      out += payload
    }
    return out
  }

  /// Feeds `bytes` in pieces of `chunk` bytes and returns the messages, described.
  private func decode(_ bytes: [UInt8], chunk: Int, limit: Int = 1_000) throws -> [String] {
    let channel = EmbeddedChannel(
      handler: ByteToMessageHandler(RelayMessageDecoder(maxMessageBytes: limit)))
    var out: [String] = []
    var offset = 0
    while offset < bytes.count {
      let end = min(offset + chunk, bytes.count)
      try channel.writeInbound(ByteBuffer(bytes: bytes[offset..<end]))
      offset = end
      while let message = try channel.readInbound(as: RelayMessage.self) {
        switch message {
        case .binary(let buffer): out.append("binary \(Array(buffer.readableBytesView))")
        case .ping(let buffer): out.append("ping \(Array(buffer.readableBytesView))")
        case .close: out.append("close")
        case .oversize(let bytes): out.append("oversize \(bytes)")
        case .text: out.append("text")
        case .other: out.append("other")
        }
      }
    }
    _ = try? channel.finish()
    return out
  }

  func testMessagesAtEveryChunkSize() throws {
    let big = (0..<900).map { UInt8(truncatingIfNeeded: $0) }
    let stream =
      frame(2, [1, 2, 3]) + frame(9, [7]) + frame(2, big) + frame(2, [5], fin: false)
      + frame(10, []) + frame(0, [6], fin: false) + frame(0, [7]) + frame(1, [0x61])
      + frame(2, [9, 9], mask: [1, 2, 3, 4]) + frame(8, [3, 0xE8])
    let expected = [
      "binary [1, 2, 3]", "ping [7]", "binary \(big)", "other", "binary [5, 6, 7]", "text",
      "binary [9, 9]", "close",
    ]
    for chunk in [1, 2, 3, 7, 64, 1_000, stream.count] {
      XCTAssertEqual(try decode(stream, chunk: chunk), expected, "chunk \(chunk)")
    }
  }

  func testOversizeMessagesAreSkippedAndCounted() throws {
    let huge = [UInt8](repeating: 0xAB, count: 5_000)
    let stream =
      frame(2, [1]) + frame(2, huge) + frame(2, [2])
      // A fragmented message that crosses the limit on its third fragment.
      + frame(2, [UInt8](repeating: 1, count: 400), fin: false)
      + frame(0, [UInt8](repeating: 2, count: 400), fin: false) + frame(9, [])
      + frame(0, [UInt8](repeating: 3, count: 400)) + frame(2, [3])
    let expected = [
      "binary [1]", "oversize 5000", "binary [2]", "ping []", "oversize 1200", "binary [3]",
    ]
    for chunk in [1, 5, 333, stream.count] {
      XCTAssertEqual(try decode(stream, chunk: chunk), expected, "chunk \(chunk)")
    }
  }

  /// Found in review: each fragment used to copy everything held so far (a second reference to
  /// the held buffer defeated growing it in place), so a message's cost grew with the square of
  /// its fragment count — minutes of the event loop for a 5 MiB message sent one byte per
  /// fragment. A 5 MiB message in 20,000 fragments (which copied ~50 GB before the fix: 6.9 s
  /// of a debug build here) now joins in one pass (0.2 s).
  func testManyFragmentsJoinInLinearTime() throws {
    let count = 20_000
    let fragment = 256
    var stream: [UInt8] = []
    stream.reserveCapacity(count * (fragment + 4))
    for index in 0..<count {
      let opcode: UInt8 = index == 0 ? 2 : 0
      stream += [(index == count - 1 ? 0x80 : 0) | opcode, 126, 1, 0]  // 256-byte payload
      stream += [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: fragment)
    }
    let channel = EmbeddedChannel(
      handler: ByteToMessageHandler(RelayMessageDecoder(maxMessageBytes: 6 << 20)))
    let clock = ContinuousClock()
    let start = clock.now
    try channel.writeInbound(ByteBuffer(bytes: stream))
    let elapsed = clock.now - start
    guard case .binary(let message) = try channel.readInbound(as: RelayMessage.self) else {
      return XCTFail("no message")
    }
    XCTAssertEqual(message.readableBytes, count * fragment)
    XCTAssertEqual(message.getInteger(at: message.readerIndex + 256 * 7_777, as: UInt8.self), 0x61)
    XCTAssertLessThan(elapsed, .seconds(3), "joining fragments is linear")
    _ = try? channel.finish()
  }

  /// A negative limit (a caller's mistake, not the wire's) is a limit of 0: every data message
  /// is over it, control frames still arrive, and nothing traps.
  func testANegativeLimitIsZero() throws {
    let stream = frame(2, [1, 2]) + frame(9, [7]) + frame(2, []) + frame(8, [3, 0xE8])
    XCTAssertEqual(
      try decode(stream, chunk: 3, limit: -5), ["oversize 2", "ping [7]", "binary []", "close"])
  }

  /// A frame declaring 2^63−1 bytes is skipped as it arrives: nothing is allocated for it.
  func testHugeDeclaredLengthIsNeverAllocated() throws {
    let channel = EmbeddedChannel(
      handler: ByteToMessageHandler(RelayMessageDecoder(maxMessageBytes: 1_000)))
    try channel.writeInbound(
      ByteBuffer(bytes: [0x82, 127, 0x7F] + [UInt8](repeating: 0xFF, count: 7)))
    for _ in 0..<64 { try channel.writeInbound(ByteBuffer(repeating: 0, count: 1 << 16)) }
    XCTAssertNil(try channel.readInbound(as: RelayMessage.self))
    _ = try? channel.finish()
  }

  func testProtocolViolationsAreErrors() throws {
    for (bytes, why) in [
      ([0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0], "64-bit length"),
      ([0xC2, 0], "reserved bit"),
      ([0x89, 126, 0, 200] + [UInt8](repeating: 0, count: 200), "long ping"),
      ([0x09, 0], "fragmented ping"),
      ([0x80, 0], "continuation with no message"),
      ([0x02, 0, 0x82, 0], "message inside a message"),
      ([0x83, 0], "unknown opcode"),
    ] as [([UInt8], String)] {
      let channel = EmbeddedChannel(
        handler: ByteToMessageHandler(RelayMessageDecoder(maxMessageBytes: 1_000)))
      XCTAssertThrowsError(try channel.writeInbound(ByteBuffer(bytes: bytes)), why)
      _ = try? channel.finish()
    }
  }
}
