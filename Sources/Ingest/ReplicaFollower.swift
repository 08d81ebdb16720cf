import CoreMetrics
import Dispatch
import EventLog
import Events
import Foundation
import Logging
import NIOCore
import NIOSSL
import NIOWebSocket
import Synchronization
import WebSocketClient

/// An edge's upstream (`serve --upstream`, OPERATIONS §10). From a Contrail primary it follows
/// the `/replicate` stream and stores each record exactly as the primary stored it
/// (`EventStore.storeReplicated`): the same `time_us`, relay seq, v2 seq and zstd payload, so
/// nothing is decoded or compressed again and both wires' cursors mean the same event on the
/// primary and on every edge. From any other Jetstream v1 host (an upstream URL whose path ends
/// in `/subscribe`) it follows `/subscribe?compress=true` and stores each zstd frame as it came,
/// with the upstream's `time_us` and this log's own v2 seqs (`EventStore.storeForwarded`).
/// Either way it resumes after the last stored `time_us`, reconnects with backoff, and never
/// stores an event twice.
public final class ReplicaFollower: Sendable {
  public struct Configuration: Sendable {
    /// The primary (`ws://host:port`; `/replicate` is added when there is no path), or a
    /// Jetstream v1 host (`wss://host/subscribe`: `isJetstream`).
    public var upstream: RelayEndpoint
    /// Only these collections' commits and these DIDs' events (the edge's ingest filter,
    /// passed upstream as `collections` and `dids`, or `wantedCollections` and `wantedDids` to
    /// a Jetstream host, and applied here as well).
    public var collections: [String] = []
    public var dids: [String] = []
    /// Metrics: `contrail_upstream_frames_total{outcome}`.
    public var metrics: any MetricsFactory = NOOPMetricsHandler.instance
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

  /// Batches waiting for the store queue before reads from the upstream pause.
  static let maxPendingBatches = 8

  private let configuration: Configuration
  private let store: EventStore
  private let logger: Logger
  private let tls: NIOSSLContext?
  private let queue = DispatchQueue(label: "contrail.replica.store")
  private let connection = ConnectionState()
  private let storedCount = Atomic<Int>(0)
  private let storeProblem = Mutex<String?>(nil)
  /// The ingest filter, applied to a Jetstream host's events (a primary applies it itself).
  private let filter: EventFilter?
  private let frames: UpstreamFrameCounters
  /// Frames of a Jetstream host left out as unreadable or not events since the last warning,
  /// and when that was (one warning per 10 s at most, whatever the upstream sends).
  private let badFrames = Mutex<(count: Int, warned: ContinuousClock.Instant?)>((0, nil))
  /// Whether a Jetstream host's recent frames could be used at all.
  private let health = Mutex(UpstreamHealth())
  /// How far ahead of this clock a Jetstream host's `time_us` may be.
  static let clockSkew: Int64 = 10 * 60 * 1_000_000

  public init(configuration: Configuration, store: EventStore, logger: Logger) throws {
    self.configuration = configuration
    self.store = store
    self.logger = logger
    filter =
      configuration.upstream.isJetstream
      ? try EventFilter(ingestCollections: configuration.collections, dids: configuration.dids)
      : nil
    frames = UpstreamFrameCounters(factory: configuration.metrics)
    tls =
      configuration.upstream.tls
      ? try TLSTrust.clientContext(caFile: configuration.trustedCertificates) : nil
  }

  /// Whether the upstream's stream is open now.
  public var isConnected: Bool { connection.isConnected }

  /// Connected now, or down for less than `grace` (for `/readyz`, as with a relay).
  public func isRecentlyConnected(grace: Duration) -> Bool {
    connection.isRecentlyConnected(grace: grace)
  }

  /// Why the edge is not following (the primary's log does not continue this edge's, a payload
  /// this dictionary cannot read, a message that does not decode, a full disk; a Jetstream host
  /// most of whose recent frames cannot be used, `UpstreamHealth`), until a batch is stored
  /// again (and, for a Jetstream host, its frames are usable again): what `/readyz` reports, so
  /// a balancer stops sending clients to an edge that no longer follows.
  public var problem: String? { storeProblem.withLock { $0 } }

  /// Records stored since start.
  public var stored: Int { storedCount.load(ordering: .relaxed) }
  /// Connections made so far.
  public var connections: Int { connection.connections }

  /// The request for everything after `after` (a `time_us`; 0: nothing stored yet). A Jetstream
  /// host is asked for zstd frames from `after` itself (a host with inclusive cursors repeats
  /// that one event, which is not stored again; one with exclusive cursors misses nothing), or
  /// from its live tip when nothing is stored yet.
  func target(after: Int64) -> String {
    let upstream = configuration.upstream
    let collections = configuration.collections.map(Self.escape)
    let dids = configuration.dids.map(Self.escape)
    if upstream.isJetstream {
      var query = ["compress=true"]
      if after > 0 { query.append("cursor=\(after)") }
      query += collections.map { "wantedCollections=\($0)" }
      query += dids.map { "wantedDids=\($0)" }
      // The edge's own parameters first (a host that takes the first of a repeated parameter
      // takes these), then whatever the URL carries.
      let (path, given) = upstream.jetstreamTarget
      if !given.isEmpty { query.append(String(given)) }
      return path + "?" + query.joined(separator: "&")
    }
    let path =
      upstream.target.hasPrefix(RelayEndpoint.subscribePath)
      ? "/replicate" : String(upstream.target.prefix { $0 != "?" })
    let query =
      ["after=\(after)"] + collections.map { "collections=\($0)" }
      + dids.map { "dids=\($0)" }
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

  /// What is followed, for log lines and close reasons.
  private var name: String { configuration.upstream.upstreamName }

  /// Follows the upstream until `stop()`.
  public func run() async {
    var attempt = 0
    while !connection.isStopped {
      let after = store.log.lastTimeUS ?? 0
      let target = target(after: after)
      let storedBefore = stored
      let limit = maxMessageBytes
      let handler = ReplicaHandler(
        follower: self, source: name, forwards: configuration.upstream.isJetstream,
        staleAfter: configuration.staleAfter)
      do {
        logger.info(
          "connecting to \(name)",
          metadata: ["upstream": "\(configuration.upstream)", "after": "\(after)"])
        let channel = try await WebSocketDialer.connect(
          host: configuration.upstream.host, port: configuration.upstream.port, target: target,
          tls: tls, connectTimeout: configuration.connectTimeout,
          framing: { ByteToMessageHandler(RelayMessageDecoder(maxMessageBytes: limit)) },
          handlers: { channel in try channel.pipeline.syncOperations.addHandler(handler) })
        connection.opened(channel)
        logger.info("following \(name)", metadata: ["upstream": "\(configuration.upstream)"])
        try? await channel.closeFuture.get()
        connection.closed()
        await drain()
        if !connection.isStopped {
          logger.warning(
            "\(name) stream ended",
            metadata: ["reason": "\(handler.closeReason ?? "closed by the \(name)")"])
        }
      } catch {
        logger.warning("cannot connect to \(name)", metadata: ["error": "\(error)"])
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

  /// Stores one socket read's messages on the store queue; `done` runs after, with why the
  /// connection must end (nil: it goes on). Once a batch of a connection fails, the batches of
  /// that connection queued after it are dropped (`failed`): storing them would leave a gap
  /// where the failed one's rest belongs.
  fileprivate func submit(
    _ messages: [[UInt8]], failed: FailureFlag, done: @escaping @Sendable (String?) -> Void
  ) {
    queue.async { [self] in
      guard !failed.isSet else { return done(nil) }
      let failure =
        configuration.upstream.isJetstream ? storeForwarded(messages) : storeReplicated(messages)
      if failure != nil { failed.set() }
      done(failure)
    }
  }

  /// A primary's records, stored as they are; why the connection must end, if it must.
  private func storeReplicated(_ messages: [[UInt8]]) -> String? {
    var records: [LogRecord] = []
    var undecodable: String? = nil
    for message in messages {
      do {
        records.append(try message.withUnsafeBytes { try ReplicationMessage.decode($0) })
      } catch {
        undecodable = "\(error)"  // the primary is not speaking the format
        frames.unreadable.increment()
        break
      }
    }
    let outcome = store.storeReplicated(records)
    count(stored: outcome.stored)
    if outcome.error == nil { frames.repeated.increment(by: records.count - outcome.stored) }
    if outcome.stored > 0 || outcome.error != nil || undecodable != nil {
      storeProblem.withLock {
        if let error = outcome.error {
          $0 = "cannot store the primary's records: \(error)"
        } else {
          $0 = undecodable.map { "the primary sent a message that does not decode: \($0)" }
        }
      }
    }
    if let error = outcome.error {
      logger.error("cannot store replicated records", metadata: ["error": "\(error)"])
      return "the log cannot store"
    }
    return undecodable
  }

  /// A Jetstream host's zstd frames, stored as they came; frames that cannot be read, are not
  /// events or are out of time are left out, counted and logged (at most once per 10 s), and a
  /// host most of whose frames are left out makes the edge not ready (`judge`).
  private func storeForwarded(_ messages: [[UInt8]]) -> String? {
    let now = Int64((Date().timeIntervalSince1970 * 1e6).rounded())
    let result = store.storeForwarded(messages, filter: filter, notAfter: now + Self.clockSkew)
    let outcome = result.outcome
    count(stored: outcome.stored)
    frames.unreadable.increment(by: result.unreadable)
    frames.notEvent.increment(by: result.notEvents)
    frames.badTime.increment(by: result.badTime)
    frames.filtered.increment(by: result.filtered)
    frames.repeated.increment(by: result.repeated)
    if result.leftOut > 0 { warnOfBadFrames(result.leftOut, result.firstProblem ?? "") }
    if let error = outcome.error {
      // The frames after the failed part were not looked at: the health judges none of them.
      storeProblem.withLock { $0 = "cannot store the Jetstream host's events: \(error)" }
      logger.error("cannot store forwarded events", metadata: ["error": "\(error)"])
      return "the log cannot store"
    }
    judge(frames: messages.count, leftOut: result.leftOut, problem: result.lastProblem)
    return nil
  }

  /// Adds a Jetstream host's frames to its health and sets what `/readyz` says from it: not
  /// ready while most of its recent frames cannot be used, ready otherwise (which also ends a
  /// store failure's problem once a batch is stored again).
  private func judge(frames count: Int, leftOut: Int, problem: String?) {
    let (failing, last) = health.withLock {
      $0.add(frames: count, leftOut: leftOut, problem: problem)
      return ($0.failing, $0.lastProblem)
    }
    storeProblem.withLock {
      $0 =
        failing
        ? "cannot use most of the Jetstream host's frames (last: \(last ?? "")); is "
          + "--dictionary the dictionary it compresses with, is this clock right, and does this "
          + "Contrail know its event format?"
        : nil
    }
  }

  /// The longest message taken: a primary's record (the log's limit, with its header), or a
  /// Jetstream host's frame (`EventStore.maxForwardedFrameBytes`).
  private var maxMessageBytes: Int {
    configuration.upstream.isJetstream ? EventStore.maxForwardedFrameBytes : 17 << 20
  }

  /// A message over the size limit: a primary's record cannot be skipped (the edge would have
  /// a gap), so the connection ends; a Jetstream host's frame is counted and skipped, as a
  /// relay's is.
  fileprivate func oversize() -> String? {
    guard configuration.upstream.isJetstream else { return "a message over the size limit" }
    frames.oversize.increment()
    warnOfBadFrames(1, "a frame over the size limit")
    judge(frames: 1, leftOut: 1, problem: "a frame over the size limit")
    return nil
  }

  private func count(stored: Int) {
    storedCount.add(stored, ordering: .relaxed)
    frames.stored.increment(by: stored)
  }

  private func warnOfBadFrames(_ count: Int, _ problem: String) {
    let now = ContinuousClock.now
    let due = badFrames.withLock { state -> Int? in
      state.count += count
      if let warned = state.warned, now - warned < .seconds(10) { return nil }
      defer { state = (0, now) }
      return state.count
    }
    guard let due else { return }
    logger.warning(
      "frames from the Jetstream host left out",
      metadata: ["frames": "\(due)", "first_problem": "\(problem)"])
  }
}

/// `contrail_upstream_frames_total{outcome}`: what an edge did with each message it followed.
private struct UpstreamFrameCounters {
  let stored: Counter
  let repeated: Counter
  let filtered: Counter
  let unreadable: Counter
  let notEvent: Counter
  let badTime: Counter
  let oversize: Counter

  init(factory: any MetricsFactory) {
    func counter(_ outcome: String) -> Counter {
      Counter(
        label: "contrail_upstream_frames_total", dimensions: [("outcome", outcome)],
        factory: factory)
    }
    stored = counter("stored")
    repeated = counter("repeated")
    filtered = counter("filtered")
    unreadable = counter("unreadable")
    notEvent = counter("not_event")
    badTime = counter("bad_time")
    oversize = counter("oversize")
  }
}

/// Hands each socket read's binary messages to the store queue as one batch, pausing reads while
/// too many batches wait; the connection ends when the store says so (a message that does not
/// decode, a log that cannot store), on a primary's oversize message, and on silence for
/// `staleAfter`.
private final class ReplicaHandler: ChannelInboundHandler, @unchecked Sendable {
  typealias InboundIn = RelayMessage
  typealias OutboundOut = WebSocketFrame

  private let follower: ReplicaFollower
  private var pending: [[UInt8]] = []
  private var waiting = 0
  private(set) var closeReason: String?
  /// Set by the store queue when a batch of this connection fails.
  private let failed = FailureFlag()
  private let staleAfter: TimeAmount?
  private var lastRead = NIODeadline.now()
  private var watchdog: RepeatedTask?
  /// "primary" or "Jetstream host", for close reasons.
  private let source: String
  /// Whether the upstream is a Jetstream host, whose frames are forwarded.
  private let forwards: Bool

  init(follower: ReplicaFollower, source: String, forwards: Bool, staleAfter: TimeAmount?) {
    self.follower = follower
    self.source = source
    self.forwards = forwards
    self.staleAfter = staleAfter
  }

  func handlerAdded(context: ChannelHandlerContext) {
    lastRead = .now()
    guard let staleAfter else { return }
    let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
    let every = min(staleAfter, .seconds(1))
    watchdog = context.eventLoop.scheduleRepeatedTask(initialDelay: every, delay: every) { _ in
      let (handler, context) = bound.value
      // Reads paused while the store catches up are not the upstream's silence.
      if handler.waiting >= ReplicaFollower.maxPendingBatches { handler.lastRead = .now() }
      if NIODeadline.now() - handler.lastRead >= staleAfter {
        handler.close(
          context,
          "no message or ping from the \(handler.source) for "
            + "\(staleAfter.nanoseconds / 1_000_000) ms")
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
      pending.append(Array(message.readableBytesView))
    case .oversize:
      if let reason = follower.oversize() { close(context, reason) }
    case .ping(let payload):
      context.writeAndFlush(wrapOutboundOut(.pong(echoing: payload)), promise: nil)
    case .close:
      close(context, "the \(source) closed the connection")
    case .text:
      // A Jetstream host sending JSON text ignored compress=true: each one is counted as an
      // unreadable frame (an empty one stands for it), so the edge says it cannot follow.
      if forwards { pending.append([]) }
    case .other:
      break
    }
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    guard closeReason == nil, !pending.isEmpty else { return }
    let messages = pending
    pending = []
    waiting += 1
    if waiting >= ReplicaFollower.maxPendingBatches {
      _ = context.channel.setOption(.autoRead, value: false)
    }
    let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
    let loop = context.eventLoop
    follower.submit(messages, failed: failed) { reason in
      loop.execute {
        let (handler, context) = bound.value
        handler.waiting -= 1
        if let reason { return handler.close(context, reason) }
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
