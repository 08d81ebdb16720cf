import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket

/// Dials a websocket server: TCP (and TLS when given a context), the HTTP upgrade, then the
/// caller's handlers. Frames that arrive in the same read as the 101 response are kept (NIO's
/// client drops them by default). Used for the relay and by the CLI's clients.
public enum WebSocketDialer {
  public struct Refused: Error, CustomStringConvertible {
    public var description: String { "the server did not accept the websocket upgrade" }
  }

  /// `framing`, when given, replaces NIO's frame decoder after the upgrade (the relay's
  /// `RelayMessageDecoder`); `handlers` then receive its messages instead of `WebSocketFrame`s.
  public static func connect(
    host: String, port: Int, target: String, tls: NIOSSLContext?,
    maxFrameSize: Int = 16 << 20, connectTimeout: TimeAmount = .seconds(10),
    framing: (@Sendable () -> any ChannelHandler)? = nil,
    handlers: @escaping @Sendable (Channel) throws -> Void
  ) async throws -> Channel {
    let upgraded = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .connectTimeout(connectTimeout)
      .channelOption(.socketOption(.so_keepalive), value: 1)
      .connect(host: host, port: port) { channel in
        channel.eventLoop.makeCompletedFuture {
          if let tls {
            // An IP address cannot be a TLS server name.
            let name = host.first!.isNumber || host.contains(":") ? nil : host
            try channel.pipeline.syncOperations.addHandler(
              try NIOSSLClientHandler(context: tls, serverHostname: name))
          }
          let upgrader = NIOTypedWebSocketClientUpgrader<Bool>(
            maxFrameSize: maxFrameSize,
            upgradePipelineHandler: { channel, _ in
              channel.eventLoop.makeCompletedFuture {
                try handlers(channel)
                return true
              }
            })
          let chosen: any NIOTypedHTTPClientProtocolUpgrader<Bool> =
            framing.map { OwnFramingUpgrader(websocket: upgrader, framing: $0, handlers: handlers) }
            ?? upgrader
          var headers = HTTPHeaders()
          let defaultPort = tls == nil ? 80 : 443
          let authority = host.contains(":") ? "[\(host)]" : host
          headers.add(
            name: "Host", value: port == defaultPort ? authority : "\(authority):\(port)")
          headers.add(name: "User-Agent", value: "contrail")
          let head = HTTPRequestHead(
            version: .http1_1, method: .GET, uri: target, headers: headers)
          var configuration = NIOUpgradableHTTPClientPipelineConfiguration(
            upgradeConfiguration: NIOTypedHTTPClientUpgradeConfiguration(
              upgradeRequestHead: head, upgraders: [chosen],
              notUpgradingCompletionHandler: { $0.eventLoop.makeSucceededFuture(false) }))
          configuration.leftOverBytesStrategy = .forwardBytes
          return (
            channel,
            try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
              configuration: configuration)
          )
        }
      }
    guard try await upgraded.1.get() else {
      upgraded.0.close(promise: nil)
      throw Refused()
    }
    return upgraded.0
  }
}

/// NIO's websocket client upgrade (request key, response checks) with our own frame decoder in
/// place of NIO's: the pipeline gets NIO's frame encoder, the given decoder, then the handlers.
private struct OwnFramingUpgrader: NIOTypedHTTPClientProtocolUpgrader {
  let websocket: NIOTypedWebSocketClientUpgrader<Bool>
  let framing: @Sendable () -> any ChannelHandler
  let handlers: @Sendable (Channel) throws -> Void

  var supportedProtocol: String { websocket.supportedProtocol }
  var requiredUpgradeHeaders: [String] { websocket.requiredUpgradeHeaders }

  func addCustom(upgradeRequestHeaders: inout HTTPHeaders) {
    websocket.addCustom(upgradeRequestHeaders: &upgradeRequestHeaders)
  }

  func shouldAllowUpgrade(upgradeResponse: HTTPResponseHead) -> Bool {
    websocket.shouldAllowUpgrade(upgradeResponse: upgradeResponse)
  }

  func upgrade(channel: Channel, upgradeResponse: HTTPResponseHead) -> EventLoopFuture<Bool> {
    channel.eventLoop.makeCompletedFuture {
      try channel.pipeline.syncOperations.addHandler(WebSocketFrameEncoder())
      try channel.pipeline.syncOperations.addHandler(framing())
      try handlers(channel)
      return true
    }
  }
}

/// What every websocket client of ours sends (client frames are masked): a pong echoing a ping,
/// and a normal close that drops the connection once written.
extension WebSocketFrame {
  public static func pong(answering ping: WebSocketFrame) -> WebSocketFrame {
    pong(echoing: ping.unmaskedData)
  }

  public static func pong(echoing payload: ByteBuffer) -> WebSocketFrame {
    WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: payload)
  }

  public static var normalClose: WebSocketFrame {
    var code = ByteBuffer()
    code.write(webSocketErrorCode: .normalClosure)
    return WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: code)
  }
}

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
    case .other:
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
