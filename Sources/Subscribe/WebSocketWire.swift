import Broadcast
import NIOCore

/// Server-to-client websocket frames (RFC 6455 §5.2: FIN set, unmasked) written straight into a
/// buffer, for what is not pre-framed: control frames, heartbeats, and events without frames.
enum WebSocketWire {
  static let text = FrameHeader.text
  static let binary = FrameHeader.binary
  static let close: UInt8 = 0x8
  static let ping: UInt8 = 0x9
  static let pong: UInt8 = 0xA

  /// Header bytes for a payload of `length`.
  static func headerSize(_ length: Int) -> Int { FrameHeader.size(length) }

  /// Appends one frame carrying `payload` (its readable bytes).
  static func append(_ opcode: UInt8, _ payload: ByteBuffer, to buffer: inout ByteBuffer) {
    FrameHeader.write(opcode, length: payload.readableBytes, to: &buffer)
    buffer.writeImmutableBuffer(payload)
  }

  /// One frame as its own buffer.
  static func frame(_ opcode: UInt8, _ payload: ByteBuffer) -> ByteBuffer {
    var buffer = ByteBuffer()
    buffer.reserveCapacity(headerSize(payload.readableBytes) + payload.readableBytes)
    append(opcode, payload, to: &buffer)
    return buffer
  }
}

/// One write of a subscriber: the frames of consecutive runs of a batch, as buffers to write in
/// order and flush together (NIO hands them to one `writev`).
struct FramePiece: Equatable {
  /// Slices of shared frame blocks (a run of adjacent frames is one slice), and, for runs
  /// without frames or sent as copies, buffers of this subscriber's own.
  var buffers: [ByteBuffer] = []
  /// Events sent, their payload bytes and their JSON bytes (for the metrics).
  var events = 0
  var bytes = 0
  var jsonBytes = 0

  var frameBytes: Int { buffers.reduce(0) { $0 + $1.readableBytes } }
}

/// How a subscriber turns runs of events into frames on the wire, without copying payloads:
/// each event's frame is already built in a block shared by every subscriber (`FrameBlock`),
/// and a run of adjacent frames goes out as one slice of its block.
///
/// A slice keeps its whole block alive while the socket holds it, so a slice is only taken of a
/// block this subscriber sends at least half of; frames of blocks it sends less of (a filter
/// that matches a few events of each) are copied into a buffer of its own. That bounds what a
/// stalled subscriber pins to twice what it has pending, as copies did, whatever its filter.
/// Events without frames (a ring that does not build them) are framed into that buffer too.
struct FramePlanner {
  let compressed: Bool

  /// For each run, whether it goes out as a slice of its block (true) or copied (false): a slice
  /// when the batch's runs in that block fill at least half of it.
  func slices(_ runs: [FrameRun]) -> [Bool] {
    var result = [Bool](repeating: false, count: runs.count)
    var start = 0
    while start < runs.count {
      guard let block = runs[start].block else {
        start += 1
        continue
      }
      var end = start
      var used = 0
      while end < runs.count, runs[end].block === block {
        used += runs[end].range.count
        end += 1
      }
      if used * 2 >= block.buffer(binary: compressed).readableBytes {
        for index in start..<end { result[index] = true }
      }
      start = end
    }
    return result
  }

  /// The next piece of `runs` from `start`: frames up to about `chunkBytes` (at least one run),
  /// and the index after its last run.
  func piece(_ runs: [FrameRun], slices: [Bool], from start: Int, chunkBytes: Int) -> (
    FramePiece, end: Int
  ) {
    var end = start
    var size = 0
    var copyBytes = 0
    while end < runs.count && (end == start || size < chunkBytes) {
      let bytes = runs[end].frameBytes
      size += bytes
      if !slices[end] { copyBytes += bytes }
      end += 1
    }
    var piece = FramePiece()
    var copy: ByteBuffer? = nil
    var run: (block: FrameBlock, range: Range<Int>)? = nil
    func endRun() {
      if let (block, range) = run {
        piece.buffers.append(
          block.buffer(binary: compressed).getSlice(at: range.lowerBound, length: range.count)!)
        run = nil
      }
    }
    func endCopy() {
      if let buffer = copy {
        copyBytes -= buffer.readableBytes
        piece.buffers.append(buffer)
        copy = nil
      }
    }
    let opcode = compressed ? WebSocketWire.binary : WebSocketWire.text
    for index in start..<end {
      piece.events += runs[index].events
      piece.bytes += runs[index].payloadBytes
      piece.jsonBytes += runs[index].jsonBytes
      let range = runs[index].range
      if let block = runs[index].block, slices[index] {
        endCopy()
        if let current = run, current.block === block, current.range.upperBound == range.lowerBound
        {
          run = (block, current.range.lowerBound..<range.upperBound)
        } else {
          endRun()
          run = (block, range)
        }
        continue
      }
      endRun()
      if copy == nil {
        copy = ByteBuffer()
        copy!.reserveCapacity(copyBytes)
      }
      if let block = runs[index].block {
        _ = block.buffer(binary: compressed).withUnsafeReadableBytes {
          copy!.writeBytes(UnsafeRawBufferPointer(rebasing: $0[range]))
        }
      } else {
        WebSocketWire.append(opcode, runs[index].payload ?? ByteBuffer(), to: &copy!)
      }
    }
    endRun()
    endCopy()
    return (piece, end)
  }
}

/// Sits next to the socket, so that frames already encoded by `WebSocketWire` skip NIO's
/// per-frame encoder (which the upgrader installs and which cannot be removed). Everything else
/// written through the pipeline passes it unchanged.
final class RawFrameWriter: ChannelOutboundHandler {
  typealias OutboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  private var context: ChannelHandlerContext?

  func handlerAdded(context: ChannelHandlerContext) { self.context = context }
  func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

  /// Writes and flushes encoded frames; the future completes once they are written.
  @discardableResult
  func send(_ frames: ByteBuffer) -> EventLoopFuture<Void>? {
    context.map { $0.writeAndFlush(wrapOutboundOut(frames)) }
  }

  /// Writes encoded frames (buffers in order), then flushes them together: NIO gathers the
  /// buffers into one `writev`.
  func send(_ buffers: [ByteBuffer]) {
    guard let context, !buffers.isEmpty else { return }
    for buffer in buffers { context.write(wrapOutboundOut(buffer), promise: nil) }
    context.flush()
  }
}
