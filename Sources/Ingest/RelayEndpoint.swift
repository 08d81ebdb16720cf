import URLQuery

/// Where the relay is (PROTOCOL §5.1): `wss://host`, `https://host`, `host`, or a full `ws://` or
/// `wss://` URL. `https`/`http` mean `wss`/`ws`; a bare host means `wss`, except a loopback one
/// (`localhost`, `127.x.x.x`, `::1`), which means `ws`. The subscribeRepos path is added when the
/// URL has none; a URL with a path is used exactly as given.
public struct RelayEndpoint: Sendable, Equatable, CustomStringConvertible {
  public let tls: Bool
  public let host: String
  public let port: Int
  /// Path and query as given (no cursor yet).
  public let target: String

  public static let subscribePath = "/xrpc/com.atproto.sync.subscribeRepos"

  public struct Invalid: Error, CustomStringConvertible {
    public let description: String
  }

  public init(_ text: String) throws {
    var rest = Substring(text)
    var tls = true
    let hasScheme = rest.range(of: "://") != nil
    if let range = rest.range(of: "://") {
      switch rest[..<range.lowerBound].lowercased() {
      case "wss", "https": tls = true
      case "ws", "http": tls = false
      default:
        throw Invalid(description: "unsupported relay scheme in \(text) (use wss:// or ws://)")
      }
      rest = rest[range.upperBound...]
    }
    let slash = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
    let authority = rest[..<slash]
    var target = String(rest[slash...])
    var host = Substring(authority)
    var port = tls ? 443 : 80
    if let colon = authority.lastIndex(of: ":"), !authority.hasSuffix("]") {
      guard let parsed = Int(authority[authority.index(after: colon)...]),
        (1...65535).contains(parsed)
      else { throw Invalid(description: "bad port in relay URL \(text)") }
      port = parsed
      host = authority[..<colon]
    }
    if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
    guard !host.isEmpty else { throw Invalid(description: "no host in relay URL \(text)") }
    if !hasScheme && Self.isLoopback(host) {
      tls = false
      if !authority.contains(":") || authority.hasSuffix("]") { port = 80 }
    }
    if target.isEmpty || target == "/" {
      target = Self.subscribePath
    } else if target.hasPrefix("?") {
      target = Self.subscribePath + target
    }
    self.tls = tls
    self.host = String(host)
    self.port = port
    self.target = target
  }

  /// Whether this names a Jetstream v1 host's `/subscribe` (an edge following a public
  /// Jetstream, OPERATIONS §10) rather than a relay or a Contrail primary: a path ending in
  /// `/subscribe` (`/subscribe`, `/jetstream/subscribe/`).
  public var isJetstream: Bool { jetstreamTarget.path.hasSuffix("/subscribe") }

  /// The target as a Jetstream host's: its path with a trailing slash dropped (`/subscribe/` is
  /// asked for as `/subscribe`) and the query the URL carries.
  public var jetstreamTarget: (path: Substring, query: Substring) {
    let (path, query) = QueryString.split(target)
    return (path.hasSuffix("/") ? path.dropLast() : path, query)
  }

  /// What an edge's `--upstream` names, for log lines and messages: "Jetstream host" or
  /// "primary".
  public var upstreamName: String { isJetstream ? "Jetstream host" : "primary" }

  /// Query parameters an edge sets itself on a Jetstream host's URL, so the URL must not.
  public static let jetstreamReservedParameters = ["cursor", "compress", "requireHello"]

  static func isLoopback(_ host: Substring) -> Bool {
    host == "localhost" || host == "::1" || host.hasPrefix("127.")
  }

  /// The request target resuming after `cursor` (none: from the relay's live tip).
  public func target(cursor: Int64?) -> String {
    guard let cursor else { return target }
    return target + (target.contains("?") ? "&" : "?") + "cursor=\(cursor)"
  }

  public var description: String {
    "\(tls ? "wss" : "ws")://\(host.contains(":") ? "[\(host)]" : host):\(port)\(target)"
  }
}
