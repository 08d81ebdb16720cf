import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
import WebSocketClient

/// The relay's websocket: whole messages of up to `maxFrameSize` (PROTOCOL §5.1 asks for at
/// least 5 MiB) through `RelayMessageDecoder`, which skips and reports longer ones, then
/// `RelayFrameHandler`.
enum RelayConnection {
  /// The default largest relay frame kept; longer ones are dropped and counted.
  static let defaultMaxFrameSize = 5 << 20

  static func open(
    _ endpoint: RelayEndpoint, cursor: Int64?, tls: NIOSSLContext?, connectTimeout: TimeAmount,
    maxFrameSize: Int, handler: @escaping @Sendable () -> RelayFrameHandler
  ) async throws -> Channel {
    try await WebSocketDialer.connect(
      host: endpoint.host, port: endpoint.port, target: endpoint.target(cursor: cursor), tls: tls,
      connectTimeout: connectTimeout,
      framing: { ByteToMessageHandler(RelayMessageDecoder(maxMessageBytes: maxFrameSize)) },
      handlers: { channel in try channel.pipeline.syncOperations.addHandler(handler()) })
  }
}

/// Collects the binary frames of each socket read and submits them to the pipeline at
/// `channelReadComplete`; answers pings; closes the connection when the pipeline says so (an
/// error frame, a failed append) or when the relay has been silent for `staleAfter`.
final class RelayFrameHandler: ChannelInboundHandler {
  typealias InboundIn = RelayMessage
  typealias OutboundOut = WebSocketFrame

  private let pipeline: IngestPipeline
  private let staleAfter: TimeAmount?
  private let stats: ConnectionStats
  private var pending: [ByteBuffer] = []
  private var lastFrame = NIODeadline.now()
  private var watchdog: RepeatedTask?
  private var closing = false

  init(pipeline: IngestPipeline, staleAfter: TimeAmount?, stats: ConnectionStats) {
    self.pipeline = pipeline
    self.staleAfter = staleAfter
    self.stats = stats
  }

  func handlerAdded(context: ChannelHandlerContext) {
    lastFrame = .now()
    guard let staleAfter else { return }
    let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
    let every = min(staleAfter, .seconds(1))
    watchdog = context.eventLoop.scheduleRepeatedTask(initialDelay: every, delay: every) { _ in
      let (handler, context) = bound.value
      if NIODeadline.now() - handler.lastFrame >= staleAfter {
        handler.close(context, reason: "no frame for \(staleAfter.nanoseconds / 1_000_000) ms")
      }
    }
  }

  func handlerRemoved(context: ChannelHandlerContext) { watchdog?.cancel() }

  func channelInactive(context: ChannelHandlerContext) {
    watchdog?.cancel()
    submitPending(context)  // frames read just before the connection ended still count
    context.fireChannelInactive()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    lastFrame = .now()
    switch unwrapInboundIn(data) {
    case .binary(let frame):
      guard !closing else { return }
      pending.append(frame)
    case .oversize(let bytes):
      pipeline.droppedOversize(bytes: bytes)
    case .ping(let payload):
      context.writeAndFlush(wrapOutboundOut(.pong(echoing: payload)), promise: nil)
    case .close:
      close(context, reason: "the relay closed the connection")
    case .text, .other:
      break
    }
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    submitPending(context)
    context.fireChannelReadComplete()
  }

  /// Hands the frames of this socket read to the pipeline, pausing reads if it is full.
  private func submitPending(_ context: ChannelHandlerContext) {
    guard !pending.isEmpty else { return }
    let frames = pending
    pending = []
    stats.received(frames.count)
    let pipeline = self.pipeline
    let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
    let loop = context.eventLoop
    let full = pipeline.submit(frames) { reason in
      loop.execute { bound.value.0.close(bound.value.1, reason: reason) }
    }
    if full {
      context.channel.setOption(.autoRead, value: false).whenSuccess {
        pipeline.whenDrained {
          loop.execute {
            let channel = bound.value.1.channel
            channel.setOption(.autoRead, value: true).whenSuccess { channel.read() }
          }
        }
      }
    }
  }

  func errorCaught(context: ChannelHandlerContext, error: Error) {
    close(context, reason: "\(error)")
  }

  private func close(_ context: ChannelHandlerContext, reason: String) {
    guard !closing else { return }
    closing = true
    stats.closing(reason)
    let channel = context.channel
    context.writeAndFlush(wrapOutboundOut(.normalClose)).whenComplete { _ in
      channel.close(promise: nil)
    }
    // Don't wait for a relay that will not answer.
    context.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
  }
}
