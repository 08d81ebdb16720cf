import Broadcast
import CoreMetrics
import Logging
import NIOCore

extension SubscribeServer {
  /// Where to listen and the per-subscriber policies; every default is PROTOCOL's behaviour with
  /// the optional limits off.
  public struct Configuration: Sendable {
    public var host = "127.0.0.1"
    /// 0 picks a free port (tests).
    public var port = 0
    /// PROTOCOL §9: a ping every 30 s; closed after 60 s without a pong.
    public var pingInterval: TimeAmount = .seconds(30)
    public var pongTimeout: TimeAmount = .seconds(60)
    /// A connection must send a complete request within this, from its accept or from the first
    /// byte after a keep-alive response: else `408` (or a plain close if nothing came).
    public var headerTimeout: TimeAmount = .seconds(10)
    /// A keep-alive connection that sends no new request for this long is closed. Neither
    /// timeout applies after a websocket upgrade (pings do).
    public var idleTimeout: TimeAmount = .seconds(60)
    public var slowConsumer = SlowConsumerPolicy()
    public var limits = Limits()
    /// Reverse proxies whose `X-Forwarded-For` / `X-Real-IP` name the client (limits, pacing,
    /// logs); none by default.
    public var trustedProxies = TrustedProxies.none
    /// This server is an edge following a primary (`serve --upstream`): a cursor a little past
    /// its newest event is where the client left another instance, so the stream starts there
    /// (waiting for it) rather than live (OPERATIONS §10).
    public var followsPrimary = false
    /// Who may follow `/replicate` (`--replication-allow`); nil: any address (the data is as
    /// public as `/subscribe`).
    public var replicationAllowed: TrustedProxies? = nil
    /// Where the `contrail_*` subscribe metrics go (PROTOCOL §10.3).
    public var metrics: any MetricsFactory = MetricsSystem.factory
    /// `GET /metrics`: the Prometheus text; nil answers 404.
    public var metricsText: (@Sendable () -> [UInt8])? = nil
    /// Extra read-only resources by path (e.g. `serve`'s `/status` page and `/status.json`):
    /// each answers GET and HEAD with its content type and body. With `/status` present, `/`
    /// redirects there.
    public var pages: [String: @Sendable () -> Page] = [:]
    /// `GET /readyz`: nil when ready, else the one-line reason for a 503.
    public var readiness: @Sendable () -> String? = { nil }
    /// One line per subscriber connect and disconnect (silent unless given one, as `serve` does).
    public var logger = Logger(label: "contrail.subscribe") { _ in SwiftLogNoOpLogHandler() }

    public init() {}

    /// Whether `client` may follow `/replicate`.
    func allowsReplication(to client: String) -> Bool {
      replicationAllowed.map { $0.isTrusted(client) } ?? true
    }
  }

  /// When a subscriber that keeps up too slowly is closed. Falling behind retention always closes
  /// (1008 `consumer too slow`); lagging closes only when `maxLag` is set.
  public struct SlowConsumerPolicy: Sendable {
    /// Close a subscriber whose position stays more than this far behind the newest event...
    public var maxLag: TimeAmount? = nil
    /// ...for this long.
    public var grace: TimeAmount = .seconds(60)
    /// How often retention, lag and heartbeats are checked.
    public var checkInterval: TimeAmount = .milliseconds(500)

    public init(maxLag: TimeAmount? = nil, grace: TimeAmount = .seconds(60)) {
      self.maxLag = maxLag
      self.grace = grace
    }

    /// The lag limit as the feed applies it (`SubscriberFeed.health`).
    var lagLimit: SubscriberFeed.LagLimit? {
      maxLag.map { SubscriberFeed.LagLimit(maxLagUS: $0.nanoseconds / 1000, grace: grace) }
    }
  }

  /// Admission and rate limits (off by default, but for the pending cap). Refusals are HTTP 503
  /// (server full) or 429 (per address) with a one-line reason.
  public struct Limits: Sendable {
    public var maxSubscribers: Int? = nil
    /// Open TCP connections per remote address, counted from accept whether or not they
    /// upgrade; one more is answered `429 too many connections from <ip>`.
    public var maxConnectionsPerIP: Int? = nil
    /// Open connections that have not upgraded (plain HTTP or still sending their request), all
    /// addresses together; one more is closed at accept, so idle connects cannot hold
    /// unbounded file descriptors.
    public var maxPendingConnections: Int? = 1024
    /// Events per second sent to all subscriptions of one address together (Jetstream's
    /// `max-sub-rate`); delivery is paced, nothing is skipped.
    public var maxEventsPerSecondPerIP: Int? = nil

    public init() {}
  }
}

extension SubscribeServer {
  /// A resource served from `Configuration.pages`.
  public struct Page: Sendable {
    public var contentType: String
    public var body: [UInt8]

    public init(contentType: String, body: [UInt8]) {
      self.contentType = contentType
      self.body = body
    }
  }
}
