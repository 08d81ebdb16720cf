import App
import ArgumentParser
import Compression
import Foundation
import Ingest
import Logging
import NIOCore
import Prometheus
import ServiceLifecycle
import Subscribe

/// `contrail serve`: the main job. Every flag can also be given as the `CONTRAIL_*` environment
/// variable named in its help; a flag wins over the variable.
struct ServeCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "serve",
    abstract: "Consume a relay's firehose and serve Jetstream-compatible /subscribe.",
    discussion: """
      Connects to the relay (default wss://bsky.network), translates, compresses every event \
      once, keeps a 24-hour log in --data-dir and serves /subscribe, /dictionary, /metrics, \
      /healthz and /readyz. With --offline it serves the bundled fixture relay's synthetic \
      traffic instead, with no network. SIGTERM or SIGINT stop it gracefully.
      """)

  @Option(help: .init(ServeOption.relay.help)) var relay: String?
  @Option(help: .init(ServeOption.relayCursor.help)) var relayCursor: String?
  @Flag(help: .init(ServeOption.offline.help)) var offline = false
  @Option(help: .init(ServeOption.offlineRate.help)) var offlineRate: String?
  @Option(help: .init(ServeOption.host.help)) var host: String?
  @Option(help: .init(ServeOption.port.help)) var port: String?
  @Option(help: .init(ServeOption.dataDir.help)) var dataDir: String?
  @Option(help: .init(ServeOption.retention.help)) var retention: String?
  @Option(help: .init(ServeOption.maxDisk.help)) var maxDisk: String?
  @Option(help: .init(ServeOption.dictionary.help, discussion: ServeSettings.dictionaryNote))
  var dictionary: String?
  @Option(help: .init(ServeOption.compressionLevel.help)) var compressionLevel: String?
  @Option(help: .init(ServeOption.fsyncInterval.help)) var fsyncInterval: String?
  @Option(help: .init(ServeOption.liveWindow.help)) var liveWindow: String?
  @Option(help: .init(ServeOption.maxLag.help)) var maxLag: String?
  @Option(help: .init(ServeOption.maxLagGrace.help)) var maxLagGrace: String?
  @Option(help: .init(ServeOption.maxSubscribers.help)) var maxSubscribers: String?
  @Option(help: .init(ServeOption.maxConnectionsPerIP.help)) var maxConnectionsPerIp: String?
  @Option(help: .init(ServeOption.maxEventsPerSecondPerIP.help))
  var maxEventsPerSecondPerIp: String?
  @Option(help: .init(ServeOption.maxPendingConnections.help)) var maxPendingConnections: String?
  @Option(help: .init(ServeOption.trustedProxies.help)) var trustedProxies: String?
  @Option(help: .init(ServeOption.headerTimeout.help)) var headerTimeout: String?
  @Option(help: .init(ServeOption.idleTimeout.help)) var idleTimeout: String?
  @Option(help: .init(ServeOption.staleAfter.help)) var staleAfter: String?
  @Option(help: .init(ServeOption.maxFrameSize.help)) var maxFrameSize: String?
  @Option(help: .init(ServeOption.relayCA.help)) var relayCa: String?
  @Option(help: .init(ServeOption.upstream.help)) var upstream: String?
  @Option(help: .init(ServeOption.replicationAllow.help)) var replicationAllow: String?
  @Option(help: .init(ServeOption.collections.help)) var collections: String?
  @Option(help: .init(ServeOption.dids.help)) var dids: String?
  @Option(help: .init(ServeOption.metrics.help)) var metrics: String?
  @Option(help: .init(ServeOption.logLevel.help)) var logLevel: String?
  @Option(help: .init(ServeOption.logFormat.help)) var logFormat: String?

  /// The flags given, by option (ServeConfiguration.resolve adds the environment and defaults).
  var flags: [ServeOption: String] {
    let given: [(ServeOption, String?)] = [
      (.relay, relay), (.relayCursor, relayCursor), (.offline, offline ? "true" : nil),
      (.offlineRate, offlineRate), (.host, host), (.port, port), (.dataDir, dataDir),
      (.retention, retention), (.maxDisk, maxDisk), (.dictionary, dictionary),
      (.compressionLevel, compressionLevel), (.fsyncInterval, fsyncInterval),
      (.liveWindow, liveWindow), (.maxLag, maxLag), (.maxLagGrace, maxLagGrace),
      (.maxSubscribers, maxSubscribers), (.maxConnectionsPerIP, maxConnectionsPerIp),
      (.maxEventsPerSecondPerIP, maxEventsPerSecondPerIp),
      (.maxPendingConnections, maxPendingConnections), (.trustedProxies, trustedProxies),
      (.headerTimeout, headerTimeout), (.idleTimeout, idleTimeout), (.staleAfter, staleAfter),
      (.maxFrameSize, maxFrameSize), (.relayCA, relayCa), (.upstream, upstream),
      (.replicationAllow, replicationAllow), (.collections, collections),
      (.dids, dids), (.metrics, metrics),
      (.logLevel, logLevel), (.logFormat, logFormat),
    ]
    return Dictionary(uniqueKeysWithValues: given.compactMap { o, v in v.map { (o, $0) } })
  }

  func run() async throws {
    let configuration: ServeConfiguration
    do {
      configuration = try ServeConfiguration.resolve(
        flags: flags, environment: ProcessInfo.processInfo.environment)
    } catch let error as ServeError {
      throw ValidationError(error.description)
    }
    LoggingSystem.bootstrap { label in
      var handler: any LogHandler =
        configuration.jsonLogs
        ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
      handler.logLevel = configuration.logLevel
      return handler
    }
    let logger = Logger(label: "contrail")
    let registry = configuration.metrics ? PrometheusCollectorRegistry() : nil
    let contrail: ContrailServer
    do {
      contrail = try await ContrailServer.start(
        configuration.settings, registry: registry, logger: logger)
    } catch {
      logger.critical("cannot start", metadata: ["error": "\(error)"])
      throw ExitCode.failure
    }
    let group = ServiceGroup(
      configuration: .init(
        services: [.init(service: ServeService(contrail: contrail))],
        gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
    try await group.run()
  }
}

/// `serve` under swift-service-lifecycle: runs until SIGTERM/SIGINT, then stops ingest first
/// and shuts down in order (`ContrailServer.shutdown`).
struct ServeService: Service {
  let contrail: ContrailServer

  func run() async throws {
    let ingest = contrail.ingest
    let replica = contrail.replica
    await withGracefulShutdownHandler {
      await contrail.run()
    } onGracefulShutdown: {
      // Whichever upstream runs: the relay's, or an edge's primary.
      ingest.stop()
      replica?.stop()
    }
    await contrail.shutdown()
  }
}
