import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
import Synchronization
import SyntheticFirehose
import URLQuery

/// A relay stand-in that serves `/xrpc/com.atproto.sync.subscribeRepos` over websocket from a
/// `RelaySource`, to any number of clients, with `?cursor=` resume, optional pacing, and error
/// frames on request. Tests start it in-process on an ephemeral port; `contrail fake-relay` wraps it.
public final class FixtureRelay: Sendable {
  public struct Configuration: Sendable {
    public var host = "127.0.0.1"
    /// 0 picks a free port.
    public var port = 0
    /// Frames per second per connection; nil sends as fast as the client reads.
    public var rate: Int? = nil
    /// After this many frames on a connection, send an error frame (`ConsumerTooSlow`) and close.
    public var errorAfter: Int? = nil
    /// Where connect/disconnect lines go.
    public var log: @Sendable (String) -> Void = { _ in }
    /// Serve `wss://` with this context (tests of the TLS client).
    public var tls: NIOSSLContext? = nil
    /// The path it upgrades (another, e.g. `/subscribe`, to stand in for a Jetstream host).
    public var path = FixtureRelay.path

    public init() {}
  }

  public static let path = "/xrpc/com.atproto.sync.subscribeRepos"

  private enum Upgrade {
    case websocket(NIOAsyncChannel<WebSocketFrame, WebSocketFrame>, cursor: Int64?)
    case http(NIOAsyncChannel<HTTPServerRequestPart, HTTPPart<HTTPResponseHead, ByteBuffer>>)
  }

  /// Open connections by ID, and the error frame each one still has to send.
  private struct State {
    var errors: [Int: (code: String, message: String)] = [:]
    var connections: [Int: Channel] = [:]
    var nextID = 0
  }

  private let source: any RelaySource
  private let configuration: Configuration
  private let state = Mutex(State())
  private let serverChannel: Mutex<Channel?> = Mutex(nil)

  public init(source: any RelaySource, configuration: Configuration = Configuration()) {
    self.source = source
    self.configuration = configuration
  }

  /// Connections open now.
  public var openConnections: Int { state.withLock { $0.connections.count } }

  /// Websocket connections accepted so far.
  public var connectionsAccepted: Int { state.withLock { $0.nextID } }

  /// Sends `{error, message}` (op −1) on every open connection, then closes them, like a relay
  /// dropping its consumers.
  public func sendError(_ code: String, message: String = "") {
    state.withLock { state in
      for id in state.connections.keys { state.errors[id] = (code, message) }
    }
  }

  /// Cuts every open connection at the TCP level, mid-stream, with no close frame (a network
  /// fault).
  public func dropConnections() {
    for channel in state.withLock({ Array($0.connections.values) }) { channel.close(promise: nil) }
  }

  /// Starts serving in a task of its own; returns the bound port and the task (cancel it to stop).
  public func start() async throws -> (port: Int, task: Task<Void, Never>) {
    let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
    let task = Task {
      try? await run { continuation.yield($0) }
      continuation.finish()
    }
    var iterator = ports.makeAsyncIterator()
    guard let port = await iterator.next() else {
      throw NotStarted(
        description: "the fixture relay could not bind \(configuration.host):\(configuration.port)")
    }
    return (port, task)
  }

  /// `start()` could not bind the configured address.
  public struct NotStarted: Error, CustomStringConvertible {
    public let description: String
  }

  /// Binds and serves until `run`'s task is cancelled; `onBound` receives the port.
  public func run(onBound: @Sendable (Int) -> Void = { _ in }) async throws {
    let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .bind(host: configuration.host, port: configuration.port) { channel in
        channel.eventLoop.makeCompletedFuture {
          if let tls = self.configuration.tls {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
          }
          return try Self.configure(channel, path: self.configuration.path)
        }
      }
    serverChannel.withLock { $0 = server.channel }
    onBound(server.channel.localAddress?.port ?? 0)
    try await withTaskCancellationHandler {
      try await withThrowingDiscardingTaskGroup { group in
        try await server.executeThenClose { connections in
          for try await upgrade in connections {
            group.addTask { await self.serve(upgrade) }
          }
        }
      }
    } onCancel: {
      _ = serverChannel.withLock { $0 }?.close()
    }
  }

  private static func configure(_ channel: Channel, path served: String) throws
    -> EventLoopFuture<Upgrade>
  {
    let upgrader = NIOTypedWebSocketServerUpgrader<Upgrade>(
      maxFrameSize: 1 << 20,
      shouldUpgrade: { channel, head in
        let path = QueryString.split(head.uri).path
        return channel.eventLoop.makeSucceededFuture(
          path == served ? HTTPHeaders() : nil)
      },
      upgradePipelineHandler: { channel, head in
        channel.eventLoop.makeCompletedFuture {
          let socket = try NIOAsyncChannel<WebSocketFrame, WebSocketFrame>(
            wrappingChannelSynchronously: channel)
          return Upgrade.websocket(socket, cursor: cursor(in: head.uri))
        }
      })
    let configuration = NIOTypedHTTPServerUpgradeConfiguration(
      upgraders: [upgrader],
      notUpgradingCompletionHandler: { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(HTTPByteBufferResponsePartHandler())
          return Upgrade.http(
            try NIOAsyncChannel<HTTPServerRequestPart, HTTPPart<HTTPResponseHead, ByteBuffer>>(
              wrappingChannelSynchronously: channel))
        }
      })
    return try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(
      configuration: .init(upgradeConfiguration: configuration))
  }

  /// The first `cursor` query value (as Go's `Query().Get` finds it); an unparseable one is
  /// ignored (served from the start).
  static func cursor(in uri: String) -> Int64? {
    QueryString.parse(QueryString.split(uri).query).first { $0.key == "cursor" }
      .flatMap { Int64($0.value) }
  }

  private func serve(_ upgrade: EventLoopFuture<Upgrade>) async {
    do {
      switch try await upgrade.get() {
      case .websocket(let socket, let cursor):
        try await stream(socket, cursor: cursor)
      case .http(let http):
        try await http.executeThenClose { _, outbound in
          var headers = HTTPHeaders()
          headers.add(name: "Content-Length", value: "10")
          headers.add(name: "Connection", value: "close")
          try await outbound.write(
            .head(HTTPResponseHead(version: .http1_1, status: .notFound, headers: headers)))
          try await outbound.write(.body(ByteBuffer(string: "not found\n")))
          try await outbound.write(.end(nil))
        }
      }
    } catch ChannelError.inappropriateOperationForState, ChannelError.ioOnClosedChannel,
      ChannelError.alreadyClosed
    {
      // The consumer went away between two writes: a normal end, nothing to report.
    } catch let error as IOError where [ECONNRESET, EPIPE].contains(error.errnoCode) {
      // The consumer reset the connection: its choice, nothing to report.
    } catch {
      configuration.log("fixture relay: connection ended: \(error)")
    }
  }

  private func stream(_ socket: NIOAsyncChannel<WebSocketFrame, WebSocketFrame>, cursor: Int64?)
    async throws
  {
    let id = state.withLock { state in
      state.nextID += 1
      state.connections[state.nextID] = socket.channel
      return state.nextID
    }
    defer {
      _ = state.withLock { $0.connections.removeValue(forKey: id) }
      configuration.log("fixture relay: connection \(id) closed")
    }
    configuration.log(
      "fixture relay: connection \(id) opened, cursor \(cursor.map(String.init) ?? "none")")
    try await socket.executeThenClose { inbound, outbound in
      try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
          // Answer pings; stop when the client closes.
          for try await frame in inbound {
            if frame.opcode == .ping {
              try await outbound.write(
                WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData))
            } else if frame.opcode == .connectionClose {
              return
            }
          }
        }
        group.addTask { try await self.send(id, cursor: cursor, outbound) }
        try await group.next()
        group.cancelAll()
      }
    }
  }

  /// Writes frames from the cursor on, paced, until cancelled or an error frame is due.
  private func send(
    _ id: Int, cursor: Int64?, _ outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>
  ) async throws {
    var position = source.position(after: source.oldestSeq - 1)
    if let cursor {
      if cursor < source.oldestSeq - 1 {
        let info = FrameBuilder.frame(
          type: "#info",
          body: .map([
            ("name", "OutdatedCursor"),
            ("message", "Requested cursor exceeded limit. Possibly missing events"),
          ]))
        try await outbound.write(Self.binary(info))
      } else if let newest = source.newestSeq, cursor > newest {
        return try await sendError("FutureCursor", "Cursor in the future.", outbound)
      } else {
        position = source.position(after: cursor)
      }
    }
    let clock = ContinuousClock()
    let started = clock.now
    var sent = 0
    while !Task.isCancelled {
      if let error = state.withLock({ $0.errors.removeValue(forKey: id) }) {
        return try await sendError(error.code, error.message, outbound)
      }
      if let limit = configuration.errorAfter, sent >= limit {
        return try await sendError(
          "ConsumerTooSlow", "fixture relay: error after \(limit) frames", outbound)
      }
      var batch = 256
      if let rate = configuration.rate {
        let elapsed = clock.now - started
        let due = Int(
          Double(rate)
            * (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18))
        batch = min(due - sent, max(1, rate / 10))
      }
      if let limit = configuration.errorAfter { batch = min(batch, limit - sent) }
      var frames: [WebSocketFrame] = []
      while frames.count < batch, let (_, bytes) = source.frame(at: position) {
        frames.append(Self.binary(bytes))
        position += 1
      }
      if frames.isEmpty {
        // Nothing due yet (paced), or the end of the frames (idle like a quiet relay).
        try await Task.sleep(for: .milliseconds(20))
        continue
      }
      try await outbound.write(contentsOf: frames)
      sent += frames.count
    }
  }

  private func sendError(
    _ code: String, _ message: String, _ outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>
  ) async throws {
    configuration.log("fixture relay: sending error \(code)")
    try await outbound.write(Self.binary(FrameBuilder.error(code, message: message)))
    var close = ByteBuffer()
    close.write(webSocketErrorCode: .normalClosure)
    try await outbound.write(WebSocketFrame(fin: true, opcode: .connectionClose, data: close))
  }

  private static func binary(_ bytes: [UInt8]) -> WebSocketFrame {
    WebSocketFrame(fin: true, opcode: .binary, data: ByteBuffer(bytes: bytes))
  }
}

/// Turns `HTTPPart<HTTPResponseHead, ByteBuffer>` into the IOData parts the encoder wants.
private final class HTTPByteBufferResponsePartHandler: ChannelOutboundHandler {
  typealias OutboundIn = HTTPPart<HTTPResponseHead, ByteBuffer>
  typealias OutboundOut = HTTPServerResponsePart

  func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
    let part = unwrapOutboundIn(data)
    switch part {
    case .head(let head): context.write(wrapOutboundOut(.head(head)), promise: promise)
    case .body(let buffer):
      context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: promise)
    case .end(let trailers): context.write(wrapOutboundOut(.end(trailers)), promise: promise)
    }
  }
}
