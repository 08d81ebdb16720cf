import NIOCore
import NIOEmbedded
import NIOWebSocket
import XCTest

@testable import Subscribe

/// Frames written by `WebSocketWire` decode with NIO's websocket decoder, at every length form
/// (7-bit, 16-bit and 64-bit), several to a buffer as subscriber batches are written.
final class WebSocketWireTests: XCTestCase {
  func testFramesDecodeAtEveryLengthForm() throws {
    let lengths = [0, 1, 125, 126, 127, 65_535, 65_536, 300_000]
    var batch = ByteBuffer()
    for (index, length) in lengths.enumerated() {
      let payload = ByteBuffer(bytes: (0..<length).map { UInt8(truncatingIfNeeded: $0 &+ index) })
      let opcode = index % 2 == 0 ? WebSocketWire.text : WebSocketWire.binary
      XCTAssertEqual(
        WebSocketWire.frame(opcode, payload).readableBytes,
        WebSocketWire.headerSize(length) + length)
      WebSocketWire.append(opcode, payload, to: &batch)
    }
    let channel = EmbeddedChannel(
      handler: ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 1 << 20)))
    try channel.writeInbound(batch)
    for (index, length) in lengths.enumerated() {
      let frame = try XCTUnwrap(try channel.readInbound(as: WebSocketFrame.self), "frame \(index)")
      XCTAssertTrue(frame.fin)
      XCTAssertEqual(frame.opcode, index % 2 == 0 ? .text : .binary)
      XCTAssertNil(frame.maskKey, "server frames are not masked")
      XCTAssertEqual(
        frame.data, ByteBuffer(bytes: (0..<length).map { UInt8(truncatingIfNeeded: $0 &+ index) }))
    }
    XCTAssertNil(try channel.readInbound(as: WebSocketFrame.self))
  }
}
