import Broadcast
import Compression
import CoreMetrics
import DefaultDictionary
import EventLog
import Events
import Foundation
import Ingest
import Logging
import NIOCore
import Prometheus
import RelayFixture
import Subscribe
import Synchronization
import SyntheticFirehose

/// The whole of `contrail serve`, wired in the data-flow order (ARCHITECTURE §1): relay (or the
/// bundled fixture relay, offline) → ingest pipeline → event log → live ring → subscribe server,
/// plus retention and the operations endpoints. `start` opens everything; `run` keeps ingest
/// and maintenance going until `shutdown`.
public final class ContrailServer: Sendable {
  public let settings: ServeSettings
  public let log: EventLog
  public let ring: LiveRing
  public let server: SubscribeServer
  public let ingest: Ingest
  /// On an edge (`--upstream`): what follows the primary, run instead of `ingest`.
  public let replica: ReplicaFollower?
  public let pipeline: IngestPipeline
  /// What `/status` and `/status.json` show.
  public let status: StatusCollector
  /// The bundled fixture relay's task (offline only).
  private let relay: Task<Void, Never>?
  private let lock: DataDirectoryLock
  private let logger: Logger
  private let shuttingDown: ShutdownFlag
  private let stopping = Atomic<Bool>(false)
  private let factory: any MetricsFactory

  private init(
    settings: ServeSettings, log: EventLog, ring: LiveRing, server: SubscribeServer,
    ingest: Ingest, replica: ReplicaFollower?, pipeline: IngestPipeline,
    relay: Task<Void, Never>?, lock: DataDirectoryLock,
    shuttingDown: ShutdownFlag, factory: any MetricsFactory, logger: Logger,
    status: StatusCollector
  ) {
    self.status = status
    self.shuttingDown = shuttingDown
    self.factory = factory
    self.settings = settings
    self.log = log
    self.ring = ring
    self.server = server
    self.ingest = ingest
    self.replica = replica
    self.pipeline = pipeline
    self.relay = relay
    self.lock = lock
    self.logger = logger
  }

  /// The file in the data directory that holds the relay seq to resume after when an ingest
  /// filter took every event of the last frames (`IngestPipeline`'s cursor file).
  public static let relayCursorFile = "relay-cursor"

  /// The subscribe port (useful with port 0).
  public var port: Int { server.port }

  /// Opens the data directory and the log, binds the HTTP port (so `/healthz` answers at once),
  /// and prepares ingest; nothing is read from the relay until `run`.
  public static func start(
    _ settings: ServeSettings, registry: PrometheusCollectorRegistry?, logger: Logger
  ) async throws -> ContrailServer {
    let lock = try DataDirectoryLock(settings.dataDirectory)
    // An edge compresses nothing: it stores its upstream's frames, so it serves the upstream's
    // dictionary: a primary's always, a Jetstream host's from --dictionary if given (a public
    // Jetstream has no /dictionary).
    var upstreamDictionary: ZstdDictionary? = nil
    if let upstream = settings.upstream, !upstream.isJetstream || settings.dictionaryPath == nil {
      upstreamDictionary = try await UpstreamDictionary.load(
        of: upstream, dataDirectory: settings.dataDirectory, caFile: settings.relayCertificates,
        logger: logger)
    }
    if let upstream = settings.upstream, !upstream.isJetstream, let path = settings.dictionaryPath {
      logger.warning(
        "--dictionary does not apply to an edge of a primary: it serves the primary's",
        metadata: ["dictionary": "\(path)"])
    }
    let dictionary =
      try upstreamDictionary ?? settings.dictionaryPath.map { try ZstdDictionary(path: $0) }
      ?? ZstdDictionary(bytes: DefaultDictionary.bytes)
    let source =
      upstreamDictionary.flatMap { _ in
        settings.upstream.map { "the \($0.upstreamName) \($0)" }
      }
      ?? settings.dictionaryPath ?? "built in (contrail-default)"
    logger.info(
      "zstd dictionary",
      metadata: [
        "id": "\(dictionary.id)",
        "source": "\(source)",
        "note": "\(ServeSettings.dictionaryNote)",
      ])
    var logConfiguration = EventLog.Configuration(directory: settings.dataDirectory)
    logConfiguration.retentionMicroseconds = settings.retentionMicroseconds
    logConfiguration.maxDiskBytes = settings.maxDiskBytes
    logConfiguration.sync = .interval(milliseconds: settings.fsyncMilliseconds)
    logConfiguration.dictionaryID = dictionary.id
    let log = try EventLog(logConfiguration)
    // Payloads are compressed once, so a log written with another dictionary cannot be served
    // with this one: zstd subscribers could not decode its frames.
    if let other = log.dictionaryIDs.first(where: { $0 != 0 && $0 != dictionary.id }) {
      try log.close()
      throw ServeError(
        "the data directory \(settings.dataDirectory) holds events compressed with dictionary "
          + "\(other), not \(dictionary.id) (the one configured): run with --dictionary set to "
          + "that dictionary's file, or start with an empty --data-dir")
    }
    for note in log.recoveryReport {
      logger.log(
        level: note.kind == .cutTail ? .warning : .error, "event log recovery: \(note)",
        metadata: [
          "segment": "\(note.segment)", "offset": "\(note.offset)", "bytes": "\(note.bytes)",
          "kind": "\(note.kind)",
        ])
    }
    let stats = log.stats
    logger.info(
      "event log open",
      metadata: [
        "directory": "\(settings.dataDirectory)", "events": "\(stats.events)",
        "bytes": "\(stats.bytes)", "last_seq": "\(log.lastWrittenSeq.map(String.init) ?? "none")",
      ])
    let ring = LiveRing(
      capacity: settings.liveWindowEvents, maxBytes: settings.liveWindowBytes,
      startAfter: log.lastTimeUS ?? 0)
    let factory: any MetricsFactory =
      registry.map { PrometheusMetricsFactory(registry: $0) } ?? NOOPMetricsHandler.instance

    // The ingest filter (`--collections`, `--dids`); with one, where ingest resumes when the
    // frames after the last stored event were all filtered out is kept beside the log.
    let filter = settings.ingestFilter.isEmpty ? nil : settings.ingestFilter
    if let filter {
      logger.info(
        "ingest filter: storing only matching commits; identity, account and sync events pass unless --dids excludes them",
        metadata: [
          "collections": "\(Self.shown(filter.collectionPatterns))",
          "dids": "\(Self.shown(filter.dids.sorted()))",
        ])
    }
    let pipeline = IngestPipeline(
      store: try EventStore(
        log: log, ring: ring, dictionary: dictionary, level: settings.compressionLevel),
      metrics: factory, logger: logger, filter: filter,
      cursorFile: filter.map { _ in settings.dataDirectory + "/" + Self.relayCursorFile })

    var relay: Task<Void, Never>? = nil
    var endpoint = settings.relay
    if settings.offline {
      // The bundled fixture relay: synthetic traffic continuing after what is handled.
      let source = SyntheticRelaySource(
        seed: 1, firstSeq: (pipeline.initialSeq ?? 0) + 1, window: 2_000)
      var configuration = FixtureRelay.Configuration()
      configuration.rate = settings.offlineRate
      let fixture = FixtureRelay(source: source, configuration: configuration)
      let (relayPort, task) = try await fixture.start()
      relay = task
      endpoint = try RelayEndpoint("ws://127.0.0.1:\(relayPort)")
    }
    var ingestConfiguration = Ingest.Configuration(relay: endpoint)
    ingestConfiguration.start = settings.offline ? .resume : settings.relayStart
    ingestConfiguration.staleAfter = settings.staleAfter
    ingestConfiguration.maxFrameSize = settings.maxFrameSize
    ingestConfiguration.backoffBase = settings.backoffBase
    ingestConfiguration.backoffCap = settings.backoffCap
    ingestConfiguration.trustedCertificates = settings.relayCertificates
    let ingest = try Ingest(
      configuration: ingestConfiguration, pipeline: pipeline, logger: logger)
    // An edge follows its upstream instead (`--upstream`), passing the ingest filter upstream.
    let replica = try settings.upstream.map { upstream in
      var configuration = ReplicaFollower.Configuration(upstream: upstream)
      configuration.collections = settings.ingestFilter.collectionPatterns
      configuration.dids = settings.ingestFilter.dids.sorted()
      configuration.backoffBase = settings.backoffBase
      configuration.backoffCap = settings.backoffCap
      configuration.trustedCertificates = settings.relayCertificates
      configuration.staleAfter = settings.staleAfter
      configuration.metrics = factory
      return try ReplicaFollower(
        configuration: configuration,
        store: try EventStore(log: log, ring: ring, dictionary: dictionary), logger: logger)
    }
    let upstream: any Upstream = replica ?? ingest
    let upstreamName = settings.upstream.map { "the \($0.upstreamName) \($0)" } ?? "the relay"

    var subscribe = SubscribeServer.Configuration()
    subscribe.host = settings.host
    subscribe.port = settings.port
    subscribe.slowConsumer = settings.slowConsumer
    subscribe.limits = settings.limits
    subscribe.trustedProxies = settings.trustedProxies
    subscribe.replicationAllowed = settings.replicationAllowed
    subscribe.followsPrimary = settings.upstream != nil
    subscribe.headerTimeout = settings.headerTimeout
    subscribe.idleTimeout = settings.idleTimeout
    subscribe.metrics = factory
    subscribe.logger = logger
    if let registry {
      subscribe.metricsText = { MetricHelp.annotate(registry.emitToBuffer()) }
    }
    let offline = settings.offline
    let shuttingDown = ShutdownFlag()
    subscribe.readiness = {
      if shuttingDown.value { return "shutting down" }
      if let failure = log.writeFailure { return "the event log cannot write: \(failure)" }
      if let problem = replica?.problem { return problem }
      if offline || upstream.isRecentlyConnected(grace: .seconds(30)) { return nil }
      return upstream.connections == 0
        ? "not connected to \(upstreamName) yet"
        : "the connection to \(upstreamName) has been down for over 30 s"
    }
    let status = StatusCollector(
      ring: ring, log: log, ingest: upstream, registry: registry,
      context: .init(
        relay: StatusCollector.Context.display(settings.upstream ?? endpoint),
        offline: settings.offline,
        retentionMicroseconds: settings.retentionMicroseconds, maxDiskBytes: settings.maxDiskBytes))
    subscribe.pages["/status"] = { status.page() }
    subscribe.pages["/status.json"] = { status.jsonPage() }
    let server = try await SubscribeServer.start(
      sources: .init(ring: ring, log: log, dictionary: dictionary), configuration: subscribe)
    status.attach(server)
    logger.info(
      "serving",
      metadata: [
        "address": "\(settings.host):\(server.port)",
        "upstream":
          "\(settings.upstream.map { "\($0.upstreamName) \($0)" } ?? "relay \(endpoint)")",
        "offline": "\(settings.offline)", "dictionary": "\(dictionary.id)",
        "ingest_filter": "\(filter == nil ? "none" : "on")",
        "version": "\(ContrailVersion.string)",
      ])
    return ContrailServer(
      settings: settings, log: log, ring: ring, server: server, ingest: ingest, replica: replica,
      pipeline: pipeline, relay: relay, lock: lock, shuttingDown: shuttingDown, factory: factory,
      logger: logger, status: status)
  }

  /// Returns when `task` has ended or `limit` has passed, whichever comes first.
  private static func wait(for task: Task<Void, Never>, atMost limit: Duration) async {
    let resumed = Mutex(false)
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
      let resumeOnce: @Sendable () -> Void = {
        if resumed.withLock({ done in
          defer { done = true }
          return !done
        }) {
          continuation.resume()
        }
      }
      Task {
        await task.value
        resumeOnce()
      }
      Task {
        try? await Task.sleep(for: limit)
        resumeOnce()
      }
    }
  }

  /// A filter's values for the log: `all` when there are none, at most ten.
  private static func shown(_ values: [String]) -> String {
    guard !values.isEmpty else { return "all" }
    let more = values.count > 10 ? ",… (\(values.count) in all)" : ""
    return values.prefix(10).joined(separator: ",") + more
  }

  /// Runs ingest, log maintenance (retention, fsync) and the log gauges until `shutdown()`.
  public func run() async {
    let log = self.log
    let gauges = LogGauges(factory: factory)
    let status = self.status
    let maintenance = Task {
      await withTaskGroup(of: Void.self) { group in
        group.addTask { await log.runMaintenance(every: .seconds(1)) }
        group.addTask { await status.run() }
        group.addTask {
          while !Task.isCancelled {
            gauges.record(log.stats)
            try? await Task.sleep(for: .seconds(5))
          }
        }
      }
    }
    if let replica { await replica.run() } else { await ingest.run() }
    maintenance.cancel()
    await maintenance.value
  }

  /// Graceful shutdown (PROTOCOL §9, issue order): stop ingest and let the pipeline store what
  /// it has, fsync the log, close every subscriber with 1001, stop the fixture relay.
  public func shutdown() async {
    guard !stopping.exchange(true, ordering: .relaxed) else { return }
    shuttingDown.set()
    logger.info("shutting down")
    ingest.stop()
    replica?.stop()
    _ = await pipeline.settle()
    do { try log.sync() } catch {
      logger.error("final fsync failed", metadata: ["error": "\(error)"])
    }
    try? await server.stop(timeout: .seconds(5))
    relay?.cancel()
    // The bundled relay ends once its connections do; one left mid-handshake must not hold
    // shutdown forever (a hang seen in tests): wait 3 s at most.
    if let relay { await Self.wait(for: relay, atMost: .seconds(3)) }
    lock.release()  // nothing writes any more: another server may open the directory
    logger.info(
      "stopped", metadata: ["last_seq": "\(log.lastWrittenSeq.map(String.init) ?? "none")"])
  }
}

/// Set once shutdown starts; `/readyz` then answers 503.
final class ShutdownFlag: Sendable {
  private let flag = Atomic<Bool>(false)
  var value: Bool { flag.load(ordering: .relaxed) }
  func set() { flag.store(true, ordering: .relaxed) }
}

/// `contrail_log_*` gauges: what the event log holds (updated every 5 s).
struct LogGauges: Sendable {
  let events: CoreMetrics.Gauge
  let bytes: CoreMetrics.Gauge
  let segments: CoreMetrics.Gauge
  let oldest: CoreMetrics.Gauge

  init(factory: any MetricsFactory) {
    events = CoreMetrics.Gauge(label: "contrail_log_events", factory: factory)
    bytes = CoreMetrics.Gauge(label: "contrail_log_bytes", factory: factory)
    segments = CoreMetrics.Gauge(label: "contrail_log_segments", factory: factory)
    oldest = CoreMetrics.Gauge(label: "contrail_log_oldest_event_time_seconds", factory: factory)
  }

  func record(_ stats: EventLog.Stats) {
    events.record(stats.events)
    bytes.record(stats.bytes)
    segments.record(stats.segments)
    if let time = stats.oldestTimeUS { oldest.record(Double(time) / 1e6) }
  }
}
