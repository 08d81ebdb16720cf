import Dispatch
import EventLog
import Logging
import NIOCore
import NIOSSL
import NIOWebSocket
import Synchronization
import WebSocketClient

/// An edge's upstream (`serve --upstream`, OPERATIONS §10): follows a Contrail primary's
/// `/replicate` stream and stores each record exactly as the primary stored it
/// (`EventStore.storeReplicated`): the same `time_us`, relay seq, v2 seq and zstd payload, so
/// nothing is decoded or compressed again and both wires' cursors mean the same event on the
/// primary and on every edge. Resumes after the last stored `time_us`, reconnects with backoff,
/// and never stores a record twice.
public final class ReplicaFollower: Sendable {
  public struct Configuration: Sendable {
    /// The primary (`ws://host:port`; `/replicate` is added when there is no path).
    public var upstream: RelayEndpoint
    /// Only these collections' commits and these DIDs' events (the edge's ingest filter,
    /// passed upstream as `collections` and `dids`).
    public var collections: [String] = []
    public var dids: [String] = []
    public var backoffBase: Duration = .seconds(1)
    public var backoffCap: Duration = .seconds(30)
    public var connectTimeout: TimeAmount = .seconds(10)
    /// A stream on which nothing arrives for this long — no record and no ping (a primary pings
    /// every 30 s) — is given up and dialled again: a primary whose host vanished without
    /// closing the connection is not followed forever. nil: never (`--stale-after 0`).
    public var staleAfter: TimeAmount? = .seconds(60)
    /// PEM certificates to trust for `wss://` (nil: `$SSL_CERT_FILE`, else the system's).
    public var trustedCertificates: String?

    public init(upstream: RelayEndpoint) { self.upstream = upstream }
  }

  /// Batches waiting for the store queue before reads from the primary pause.
  static let maxPendingBatches = 8

  private let configuration: Configuration
  private let store: EventStore
  private let logger: Logger
  private let tls: NIOSSLContext?
  private let queue = DispatchQueue(label: "contrail.replica.store")
  private let connection = ConnectionState()
  private let storedCount = Atomic<Int>(0)
  private let storeProblem = Mutex<String?>(nil)

  public init(configuration: Configuration, store: EventStore, logger: Logger) throws {
    self.configuration = configuration
    self.store = store
    self.logger = logger
    tls =
      configuration.upstream.tls
      ? try TLSTrust.clientContext(caFile: configuration.trustedCertificates) : nil
  }

  /// Whether the primary's stream is open now.
  public var isConnected: Bool { connection.isConnected }

  /// Connected now, or down for less than `grace` (for `/readyz`, as with a relay).
  public func isRecentlyConnected(grace: Duration) -> Bool {
    connection.isRecentlyConnected(grace: grace)
  }

  /// Why the last batch could not be stored (the primary's log does not continue this edge's,
  /// a payload this dictionary cannot read, a full disk), until a batch is stored again: what
  /// `/readyz` reports, so a balancer stops sending clients to an edge that no longer follows.
  public var problem: String? { storeProblem.withLock { $0 } }

  /// Records stored since start.
  public var stored: Int { storedCount.load(ordering: .relaxed) }
  /// Connections made so far.
  public var connections: Int { connection.connections }

  /// The request for everything after `after`.
  func target(after: Int64) -> String {
    let upstream = configuration.upstream
    let path =
      upstream.target.hasPrefix(RelayEndpoint.subscribePath)
      ? "/replicate" : String(upstream.target.prefix { $0 != "?" })
    var query = ["after=\(after)"]
    query += configuration.collections.map { "collections=\(Self.escape($0))" }
    query += configuration.dids.map { "dids=\(Self.escape($0))" }
    return path + "?" + query.joined(separator: "&")
  }

  private static func escape(_ value: String) -> String {
    var out = ""
    for byte in value.utf8 {
      switch byte {
      case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
        UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "-"),
        UInt8(ascii: "_"), UInt8(ascii: "*"):
        out.unicodeScalars.append(Unicode.Scalar(byte))
      default:
        out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
      }
    }
    return out
  }

  /// Follows the primary until `stop()`.
  public func run() async {
    var attempt = 0
    while !connection.isStopped {
      let after = store.log.lastTimeUS ?? 0
      let target = target(after: after)
      let storedBefore = stored
      let handler = ReplicaHandler(follower: self, staleAfter: configuration.staleAfter)
      do {
        logger.info(
          "connecting to primary",
          metadata: ["upstream": "\(configuration.upstream)", "after": "\(after)"])
        let channel = try await WebSocketDialer.connect(
          host: configuration.upstream.host, port: configuration.upstream.port, target: target,
          tls: tls, connectTimeout: configuration.connectTimeout,
          framing: { ByteToMessageHandler(RelayMessageDecoder(maxMessageBytes: 17 << 20)) },
          handlers: { channel in try channel.pipeline.syncOperations.addHandler(handler) })
        connection.opened(channel)
        logger.info("following primary", metadata: ["upstream": "\(configuration.upstream)"])
        try? await channel.closeFuture.get()
        connection.closed()
        await drain()
        if !connection.isStopped {
          logger.warning(
            "primary stream ended",
            metadata: ["reason": "\(handler.closeReason ?? "closed by the primary")"])
        }
      } catch {
        logger.warning("cannot connect to primary", metadata: ["error": "\(error)"])
      }
      guard !connection.isStopped else { break }
      if stored != storedBefore { attempt = 0 }
      let delay = Backoff.delay(
        attempt, base: configuration.backoffBase, cap: configuration.backoffCap)
      attempt += 1
      let deadline = ContinuousClock.now + delay
      while ContinuousClock.now < deadline && !connection.isStopped {
        try? await Task.sleep(for: min(.milliseconds(50), deadline - ContinuousClock.now))
      }
    }
    await drain()
  }

  /// Stops following; `run()` returns once what was received is stored.
  public func stop() { connection.stop() }

  /// Waits until every batch handed to the store queue is stored.
  private func drain() async {
    await withCheckedContinuation { continuation in queue.async { continuation.resume() } }
  }

  /// Stores one socket read's records on the store queue; `done` runs after.
  /// Stores one socket read's records on the store queue; `done` runs after. Once a batch of a
  /// connection fails, the batches of that connection queued after it are dropped (`failed`):
  /// storing them would leave a gap where the failed one's rest belongs.
  fileprivate func submit(
    _ records: [LogRecord], failed: FailureFlag, done: @escaping @Sendable (Error?) -> Void
  ) {
    queue.async { [self] in
      guard !failed.isSet else { return done(nil) }
      let outcome = store.storeReplicated(records)
      storedCount.add(outcome.stored, ordering: .relaxed)
      if outcome.stored > 0 || outcome.error != nil {
        storeProblem.withLock {
          $0 = outcome.error.map { "cannot store the primary's records: \($0)" }
        }
      }
      if let error = outcome.error {
        failed.set()
        logger.error("cannot store replicated records", metadata: ["error": "\(error)"])
      }
      done(outcome.error)
    }
  }
}

/// Decodes each replication message of a socket read and hands the batch to the store queue,
/// pausing reads while too many batches wait; a message that does not decode ends the
/// connection (the primary is not speaking the format), and so does silence for `staleAfter`.
private final class ReplicaHandler: ChannelInboundHandler, @unchecked Sendable {
  typealias InboundIn = RelayMessage
  typealias OutboundOut = WebSocketFrame

  private let follower: ReplicaFollower
  private var pending: [LogRecord] = []
  private var waiting = 0
  private(set) var closeReason: String?
  /// Set by the store queue when a batch of this connection fails.
  private let failed = FailureFlag()
  private let staleAfter: TimeAmount?
  private var lastRead = NIODeadline.now()
  private var watchdog: RepeatedTask?

  init(follower: ReplicaFollower, staleAfter: TimeAmount?) {
    self.follower = follower
    self.staleAfter = staleAfter
  }

  func handlerAdded(context: ChannelHandlerContext) {
    lastRead = .now()
    guard let staleAfter else { return }
    let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
    let every = min(staleAfter, .seconds(1))
    watchdog = context.eventLoop.scheduleRepeatedTask(initialDelay: every, delay: every) { _ in
      let (handler, context) = bound.value
      // Reads paused while the store catches up are not the primary's silence.
      if handler.waiting >= ReplicaFollower.maxPendingBatches { handler.lastRead = .now() }
      if NIODeadline.now() - handler.lastRead >= staleAfter {
        handler.close(
          context,
          "no message or ping from the primary for \(staleAfter.nanoseconds / 1_000_000) ms")
      }
    }
  }

  func handlerRemoved(context: ChannelHandlerContext) { watchdog?.cancel() }

  func channelInactive(context: ChannelHandlerContext) {
    watchdog?.cancel()
    context.fireChannelInactive()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    lastRead = .now()
    // After a bad message nothing more of this connection is taken: it would follow a gap.
    guard closeReason == nil else { return }
    switch unwrapInboundIn(data) {
    case .binary(let message):
      do {
        pending.append(try message.withUnsafeReadableBytes { try ReplicationMessage.decode($0) })
      } catch {
        close(context, "\(error)")
      }
    case .oversize:
      close(context, "a replication message over the size limit")
    case .ping(let payload):
      context.writeAndFlush(wrapOutboundOut(.pong(echoing: payload)), promise: nil)
    case .close:
      close(context, "the primary closed the connection")
    case .other:
      break
    }
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    guard closeReason == nil, !pending.isEmpty else { return }
    let records = pending
    pending = []
    waiting += 1
    if waiting >= ReplicaFollower.maxPendingBatches {
      _ = context.channel.setOption(.autoRead, value: false)
    }
    let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
    let loop = context.eventLoop
    follower.submit(records, failed: failed) { error in
      loop.execute {
        let (handler, context) = bound.value
        handler.waiting -= 1
        if error != nil { return handler.close(context, "the log cannot store") }
        if handler.waiting < ReplicaFollower.maxPendingBatches {
          let channel = context.channel
          channel.setOption(.autoRead, value: true).whenSuccess { channel.read() }
        }
      }
    }
  }

  func errorCaught(context: ChannelHandlerContext, error: Error) { close(context, "\(error)") }

  private func close(_ context: ChannelHandlerContext, _ reason: String) {
    guard closeReason == nil else { return }
    closeReason = reason
    pending = []
    context.close(promise: nil)
  }
}

extension String {
  fileprivate func leftPadded(to width: Int) -> String {
    count >= width ? self : String(repeating: "0", count: width - count) + self
  }
}

/// A flag one thread sets and others read (a connection whose store failed).
final class FailureFlag: Sendable {
  private let flag = Atomic<Bool>(false)
  var isSet: Bool { flag.load(ordering: .relaxed) }
  func set() { flag.store(true, ordering: .relaxed) }
}
