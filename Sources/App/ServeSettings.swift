import Compression
import Events
import Ingest
import NIOCore
import Subscribe

/// Everything `contrail serve` can be told (flags and `CONTRAIL_*` variables resolve to this).
public struct ServeSettings: Sendable {
  public var relay: RelayEndpoint
  public var relayStart: Ingest.StartCursor = .resume
  /// Serve the bundled fixture relay's synthetic traffic instead of connecting out.
  public var offline = false
  /// Frames per second of the offline relay.
  public var offlineRate = 200
  public var host = "0.0.0.0"
  public var port = 6008
  public var dataDirectory = "data"
  public var retentionMicroseconds: Int64 = 24 * 3_600_000_000
  public var maxDiskBytes: Int? = nil
  /// A zstd dictionary file; nil: the default one compiled into the binary.
  public var dictionaryPath: String?
  public var compressionLevel: Int32 = EventCompressor.defaultLevel
  public var fsyncMilliseconds = 100
  /// The in-memory live window: subscribers further behind read the log (page cache, ~600k
  /// events/s), so a small window costs little and keeps RSS low.
  public var liveWindowEvents = 16_384
  public var liveWindowBytes = 32 << 20
  public var slowConsumer = SubscribeServer.SlowConsumerPolicy()
  public var limits = SubscribeServer.Limits()
  public var trustedProxies = TrustedProxies.none
  public var headerTimeout: TimeAmount = .seconds(10)
  public var idleTimeout: TimeAmount = .seconds(60)
  public var staleAfter: TimeAmount? = .seconds(60)
  /// Relay frames longer than this are dropped unread and counted (`type="oversize"`).
  public var maxFrameSize = 5 << 20
  public var backoffBase: Duration = .seconds(1)
  public var backoffCap: Duration = .seconds(30)
  /// PEM file of certificates to trust for a `wss://` relay instead of the system's.
  public var relayCertificates: String? = nil
  /// An edge's primary (`--upstream`): follow its `/replicate` stream instead of a relay.
  public var upstream: RelayEndpoint? = nil
  /// Who may follow this server's `/replicate` (`--replication-allow`); nil: anyone.
  public var replicationAllowed: TrustedProxies? = nil
  /// What ingest stores (`--collections`, `--dids`): commits of these collections, events of
  /// these DIDs; every kind passes. `EventFilter.everything` (empty) stores everything.
  public var ingestFilter = EventFilter.everything

  public init(relay: RelayEndpoint, dictionaryPath: String? = nil) {
    self.relay = relay
    self.dictionaryPath = dictionaryPath
  }

  /// What `serve` runs with when told nothing.
  public static let defaults = ServeSettings(relay: try! RelayEndpoint("wss://bsky.network"))

  /// Said wherever the dictionary is chosen (`serve --help`, the start-up log).
  public static let dictionaryNote =
    "Clients that embed Jetstream's v1 dictionary (ID 1612007021) can only decode compressed "
    + "events if the server runs with --dictionary pointing at that same file."
}

/// A set-up problem worth one clear line (bad data directory, missing dictionary, …).
public struct ServeError: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}
