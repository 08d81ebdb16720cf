import Broadcast
import Compression
import EventLog
import Events
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// The HTTP and websocket front (PROTOCOL §1, §10.1): `GET /subscribe` (validated before the
/// upgrade), `/dictionary`, `/healthz`, `/readyz`, `/metrics`; 404 for unknown paths, 405 for
/// other methods.
public final class SubscribeServer: Sendable {
  public struct Sources: Sendable {
    public let ring: LiveRing
    public let log: EventLog
    public let dictionary: ZstdDictionary

    public init(ring: LiveRing, log: EventLog, dictionary: ZstdDictionary) {
      self.ring = ring
      self.log = log
      self.dictionary = dictionary
    }
  }

  private let sources: Sources
  /// The v2 wire's frames of live events, made while v2 subscribers are connected.
  public let v2: V2Publisher
  private let channel: Channel
  private let subscribers: SubscriberRegistry
  private let limits: ConnectionLimits

  /// PROTOCOL §2.1: request targets of at least 1 MiB (10,000 DIDs take ~440 KB).
  static let requestLimits: NIOHTTPDecoderLimitConfiguration = {
    var limits = NIOHTTPDecoderLimitConfiguration()
    limits.maxHeaderFieldSize = 2 << 20
    limits.maxHeaderListSize = 2 << 20
    return limits
  }()

  private init(
    sources: Sources, v2: V2Publisher, channel: Channel, subscribers: SubscriberRegistry,
    limits: ConnectionLimits
  ) {
    self.sources = sources
    self.v2 = v2
    self.channel = channel
    self.subscribers = subscribers
    self.limits = limits
  }

  /// Open subscriptions.
  public var subscriberCount: Int { subscribers.count }

  /// Open connections that have not upgraded (`Limits.maxPendingConnections` caps them).
  public var pendingConnectionCount: Int { limits.pending }

  public var port: Int { channel.localAddress?.port ?? 0 }

  /// Bytes written to each open subscription but not yet taken by its socket: bounded by the
  /// write-buffer high-water mark plus one write piece (about 128 KiB), however slowly the
  /// client reads.
  public func bufferedBytesPerSubscriber() async -> [Int] {
    var sizes: [Int] = []
    for channel in subscribers.channels {
      if let size = try? await channel.getOption(.bufferedWritableBytes).get() {
        sizes.append(size)
      }
    }
    return sizes
  }

  /// Binds and starts serving.
  public static func start(sources: Sources, configuration: Configuration = Configuration())
    async throws -> SubscribeServer
  {
    let metrics = SubscribeMetrics(factory: configuration.metrics)
    let environment = SubscriberEnvironment(
      configuration: configuration, registry: SubscriberRegistry(),
      limits: ConnectionLimits(configuration.limits), metrics: metrics,
      heartbeats: try HeartbeatEncoder(dictionary: sources.dictionary), log: sources.log)
    let decompressors = DecompressorPool(dictionary: sources.dictionary)
    let v2 = V2Publisher(
      source: sources.ring, transcoder: V2Transcoder(dictionary: sources.dictionary))
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelOption(.writeBufferWaterMark, value: SubscriberHandler.writeBufferWaterMark)
      .childChannelInitializer { channel in
        let peer = channel.remoteAddress?.ipAddress ?? "unknown"
        let proxied = configuration.trustedProxies.isTrusted(peer)
        let admission = environment.limits.accept(proxied ? nil : peer)
        if admission == .dropped {
          metrics.refused("max_pending")
          return channel.eventLoop.makeFailedFuture(TooManyPendingConnections())
        }
        let gate = NIOLoopBound(
          ConnectionGuard(
            peer: peer, admitted: admission == .admitted, limits: environment.limits,
            metrics: metrics, configuration: configuration),
          eventLoop: channel.eventLoop)
        let http = NIOLoopBound(
          HTTPHandler(
            dictionary: sources.dictionary, metrics: metrics, configuration: configuration,
            gate: gate.value),
          eventLoop: channel.eventLoop)
        if case .refused(let refusal) = admission { http.value.refusal = refusal }
        let upgrader = NIOWebSocketServerUpgrader(
          maxFrameSize: SubscriberHandler.maxMessageBytes, automaticErrorHandling: false,
          shouldUpgrade: { channel, head in
            // Refused connections and invalid requests are answered by the HTTP handler.
            guard http.value.refusal == nil else {
              return channel.eventLoop.makeSucceededFuture(nil)
            }
            /// Admits the subscription under the limits, or leaves the refusal to the HTTP handler.
            @Sendable func admit(_ options: SubscribeOptions) -> Bool {
              if let refusal = gate.value.admitProxied(head) ?? environment.limits.admitSubscriber()
              {
                http.value.refusal = refusal
                return false
              }
              gate.value.subscribed()
              gate.value.options = options
              return true
            }
            if case .success(let options)? = Route.subscribeOptions(head) {
              return channel.eventLoop.makeSucceededFuture(admit(options) ? HTTPHeaders() : nil)
            }
            if case .success(let request)? = Route.replication(head) {
              // An edge following this server (OPERATIONS §10): every record after `after`.
              guard configuration.allowsReplication(to: gate.value.clientAddress(head)),
                admit(
                  SubscribeOptions(
                    filter: request.filter, cursor: request.after + 1, compress: true,
                    requireHello: false, maxMessageSizeBytes: 0, heartbeat: nil))
              else { return channel.eventLoop.makeSucceededFuture(nil) }
              gate.value.replica = true
              return channel.eventLoop.makeSucceededFuture(HTTPHeaders())
            }
            // v2 is gated on readiness (PROTOCOL §12.1): the HTTP handler answers 503.
            guard configuration.readiness() == nil,
              case .success(let request)? = Route.v2Options(
                head, dictionaryID: sources.dictionary.id)
            else {
              return channel.eventLoop.makeSucceededFuture(nil)
            }
            // The cursor is resolved before the upgrade (a seq below the floor is a 400), off
            // the event loop: it may read the log.
            return NIOThreadPool.singleton.runIfActive(eventLoop: channel.eventLoop) {
              V2Cursor.resolve(
                request.cursor, log: sources.log, now: Sequencer.wallClockMicroseconds(),
                followsPrimary: configuration.followsPrimary)
            }.map { resolved -> HTTPHeaders? in
              switch resolved {
              case .failure(let error):
                http.value.xrpcRefusal = error
                return nil
              case .success(let start):
                // The client may have gone during the lookup: its places were given back, so
                // none may be taken now.
                guard channel.isActive, admit(SubscribeOptions(v2: request)) else { return nil }
                gate.value.v2 = V2Session(publisher: v2, info: start.info)
                gate.value.v2Start = start.start
                return V2Upgrade.responseHeaders(head.headers)
              }
            }
          },
          upgradePipelineHandler: { channel, head in
            guard let options = gate.value.options else {
              return channel.eventLoop.makeFailedFuture(ChannelError.inappropriateOperationForState)
            }
            gate.value.options = nil
            let session = gate.value.v2
            let v2Start = gate.value.v2Start
            let replica = gate.value.replica
            gate.value.v2 = nil
            gate.value.replica = false
            let address = gate.value.clientAddress(head)
            return channel.eventLoop.makeCompletedFuture {
              // Subscribers write pre-encoded frames (`WebSocketWire`), whole batches at once.
              let writer = RawFrameWriter()
              try channel.pipeline.syncOperations.addHandler(writer, position: .first)
              let handler = SubscriberHandler(
                options: options,
                wire: replica ? .replication : session.map { .v2($0) } ?? .v1, address: address,
                environment: environment, writer: writer
              ) { filter in
                if replica {
                  // An edge catching up is not a slow consumer: only retention ends it.
                  return SubscriberFeed(
                    ring: sources.ring, log: sources.log, start: .cursor(options.cursor ?? 1),
                    filter: filter, form: .replication)
                }
                if let session, let v2Start {
                  return SubscriberFeed(
                    ring: session.publisher.ring, log: sources.log, start: v2Start,
                    filter: filter,
                    form: .v2(session.publisher.transcoder, compressed: options.compress),
                    lagLimit: configuration.slowConsumer.lagLimit)
                }
                return SubscriberFeed(
                  ring: sources.ring, log: sources.log,
                  start: options.cursor.map {
                    .cursor($0, waitIfAhead: configuration.followsPrimary)
                  } ?? .live, filter: filter,
                  decompressors: options.compress ? nil : decompressors,
                  lagLimit: configuration.slowConsumer.lagLimit)
              }
              try channel.pipeline.syncOperations.addHandlers(
                NIOWebSocketFrameAggregator(
                  minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 100_000,
                  maxAccumulatedFrameSize: SubscriberHandler.maxMessageBytes),
                handler)
            }
          })
        do {
          try channel.pipeline.syncOperations.addHandler(gate.value)
        } catch {
          return channel.eventLoop.makeFailedFuture(error)
        }
        return channel.pipeline.configureHTTPServerPipeline(
          withServerUpgrade: (
            upgraders: [upgrader],
            completionHandler: { context in
              // Upgraded: plain HTTP handling and its timeouts no longer apply.
              gate.value.upgraded()
              context.pipeline.syncOperations.removeHandler(http.value, promise: nil)
            }
          ),
          withDecoderLimitConfiguration: Self.requestLimits
        ).flatMapThrowing {
          try channel.pipeline.syncOperations.addHandler(http.value)
        }
      }
      .bind(host: configuration.host, port: configuration.port).get()
    return SubscribeServer(
      sources: sources, v2: v2, channel: channel, subscribers: environment.registry,
      limits: environment.limits)
  }

  /// Stops accepting, closes every subscription with 1001 `server shutting down`, and waits up to
  /// `timeout` for them to end (each connection is dropped 5 s after its close frame regardless).
  public func stop(timeout: Duration = .seconds(10)) async throws {
    try await channel.close().get()
    subscribers.closeAll()
    let deadline = ContinuousClock.now + timeout
    while subscribers.count > 0 && ContinuousClock.now < deadline {
      try await Task.sleep(for: .milliseconds(10))
    }
  }
}

/// Closes a connection at accept when `Limits.maxPendingConnections` are already open.
struct TooManyPendingConnections: Error {}
