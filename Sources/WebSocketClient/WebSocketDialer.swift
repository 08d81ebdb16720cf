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
    try await connect(
      host: host, port: port, target: target, tls: tls, maxFrameSize: maxFrameSize,
      connectTimeout: connectTimeout, framing: framing
    ) { channel in
      try handlers(channel)
      return channel
    }
  }

  /// As above, but `upgraded` sets up the upgraded channel (synchronously, on its event loop)
  /// and returns what the caller keeps, e.g. an `NIOAsyncChannel` wrapping it.
  public static func connect<Upgraded: Sendable>(
    host: String, port: Int, target: String, tls: NIOSSLContext?,
    maxFrameSize: Int = 16 << 20, connectTimeout: TimeAmount = .seconds(10),
    framing: (@Sendable () -> any ChannelHandler)? = nil,
    upgraded setUp: @escaping @Sendable (Channel) throws -> Upgraded
  ) async throws -> Upgraded {
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
          let upgrader = NIOTypedWebSocketClientUpgrader<Upgraded?>(
            maxFrameSize: maxFrameSize,
            upgradePipelineHandler: { channel, _ in
              channel.eventLoop.makeCompletedFuture { try setUp(channel) }
            })
          let chosen: any NIOTypedHTTPClientProtocolUpgrader<Upgraded?> =
            framing.map { OwnFramingUpgrader(websocket: upgrader, framing: $0, setUp: setUp) }
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
              notUpgradingCompletionHandler: { $0.eventLoop.makeSucceededFuture(nil) }))
          configuration.leftOverBytesStrategy = .forwardBytes
          return (
            channel,
            try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
              configuration: configuration)
          )
        }
      }
    guard let result = try await upgraded.1.get() else {
      upgraded.0.close(promise: nil)
      throw Refused()
    }
    return result
  }
}

/// NIO's websocket client upgrade (request key, response checks) with our own frame decoder in
/// place of NIO's: the pipeline gets NIO's frame encoder, the given decoder, then the handlers.
private struct OwnFramingUpgrader<Upgraded: Sendable>: NIOTypedHTTPClientProtocolUpgrader {
  let websocket: NIOTypedWebSocketClientUpgrader<Upgraded?>
  let framing: @Sendable () -> any ChannelHandler
  let setUp: @Sendable (Channel) throws -> Upgraded

  var supportedProtocol: String { websocket.supportedProtocol }
  var requiredUpgradeHeaders: [String] { websocket.requiredUpgradeHeaders }

  func addCustom(upgradeRequestHeaders: inout HTTPHeaders) {
    websocket.addCustom(upgradeRequestHeaders: &upgradeRequestHeaders)
  }

  func shouldAllowUpgrade(upgradeResponse: HTTPResponseHead) -> Bool {
    websocket.shouldAllowUpgrade(upgradeResponse: upgradeResponse)
  }

  func upgrade(channel: Channel, upgradeResponse: HTTPResponseHead) -> EventLoopFuture<Upgraded?> {
    channel.eventLoop.makeCompletedFuture {
      try channel.pipeline.syncOperations.addHandler(WebSocketFrameEncoder())
      try channel.pipeline.syncOperations.addHandler(framing())
      return try setUp(channel)
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
