import Events
import NIOHTTP1
import URLQuery

/// A validated v2 `subscribeEvents` request (PROTOCOL-v2 §1.3).
public struct V2Options: Sendable, Equatable {
  /// `kinds`, `dids` and `collections`; without `kinds` every kind passes, `sync` included.
  public var filter: EventFilter
  /// Skip events whose uncompressed full frame is longer; 0 = no cap.
  public var maxMessageSizeBytes: Int64
  /// The dictionary ID the client asked for (always the server's current one); nil = text
  /// frames.
  public var zstdDictionary: UInt32?
  /// A non-negative int64 (a seq below 10^15, unix microseconds from there); nil = live.
  public var cursor: Int64?

  public init(
    filter: EventFilter = .everything, maxMessageSizeBytes: Int64 = 0,
    zstdDictionary: UInt32? = nil, cursor: Int64? = nil
  ) {
    self.filter = filter
    self.maxMessageSizeBytes = maxMessageSizeBytes
    self.zstdDictionary = zstdDictionary
    self.cursor = cursor
  }
}

/// `GET /xrpc/network.bsky.jetstream.subscribeEvents` before the upgrade (PROTOCOL-v2 §1).
public enum V2Request {
  public static let path = "/xrpc/network.bsky.jetstream.subscribeEvents"
  public static let maxMessageSizeParameter = "maxMessageSizeBytes"

  /// Parses the query (without `?`) and the headers, running the checks of PROTOCOL-v2 §1.2 rows
  /// 2–18 and 20–21 in that order; the first failure is the answer. Rows 1, 19, 22 and 23 need
  /// the server's state and are the caller's (`XRPCError.notReady`, `.cursorTooOld`,
  /// `.cursorResolutionFailed`). `dictionaryID` is the server's current dictionary.
  public static func parse(query: Substring, headers: HTTPHeaders, dictionaryID: UInt32)
    -> Result<V2Options, XRPCError>
  {
    // Row 2: the raw query must parse as a whole.
    let pairs: [(key: String, value: String)]
    switch QueryString.parseStrict(query) {
    case .success(let parsed): pairs = parsed
    case .failure(let error):
      return .failure(.invalidRequest(options(error.description), reason: "v2_invalid_query"))
    }
    var first: [String: String] = [:]  // scalars: the first occurrence counts
    var kinds: [String] = []
    var dids: [String] = []
    var collections: [String] = []
    var maxSizeValues: [String] = []
    for (key, value) in pairs {
      switch key {
      case "kinds": kinds.append(value)
      case "dids": dids.append(value)
      case "collections": collections.append(value)
      case maxMessageSizeParameter: maxSizeValues.append(value)
      default: if first[key] == nil { first[key] = value }
      }
    }

    // Row 3: the v1 compression opt-ins.
    if first["compress"] == "true"
      || headers.first(name: "Socket-Encoding")?.contains("zstd") == true
    {
      return .failure(
        .invalidRequest(
          "compress=true / Socket-Encoding: zstd is the /subscribe (v1) opt-in; this endpoint uses "
            + "zstdDictionary=<id> with the dictionary from getZstdDictionary",
          reason: "v2_v1_compression"))
    }
    // Rows 4 and 5: the dictionary.
    var zstdDictionary: UInt32? = nil
    if let value = first["zstdDictionary"], !value.isEmpty {
      guard let id = parseUInt32(value), id != 0 else {
        return .failure(
          .invalidRequest(
            "zstdDictionary must be a positive integer zstd dictionary ID",
            reason: "v2_invalid_dictionary_id"))
      }
      guard id == dictionaryID else {
        return .failure(
          XRPCError(
            .badRequest, error: "UnknownZstdDictionary",
            message:
              "unknown zstd dictionary id \(id); current dictionary id is \(dictionaryID) "
              + "(fetch it via getZstdDictionary and reconnect)",
            reason: "v2_unknown_dictionary"))
      }
      zstdDictionary = id
    }
    // Rows 6–8: v1 parameters, refused by name whatever their value.
    let legacy = [
      ("wantedDids", "wantedDids is the legacy /subscribe parameter; use dids"),
      (
        "wantedCollections", "wantedCollections is the legacy /subscribe parameter; use collections"
      ),
      (
        "requireHello",
        "requireHello is not supported on this endpoint; it is server-push only "
          + "(subscriber-sourced messages were removed)"
      ),
    ]
    for (name, message) in legacy where first[name] != nil {
      return .failure(.invalidRequest(options(message), reason: "v2_legacy_parameter"))
    }
    // Rows 9–16: the filter.
    let filter: EventFilter
    do {
      filter = try EventFilter(v2Kinds: kinds, dids: dids, collections: collections)
    } catch {
      return .failure(filterError(error))
    }
    // Rows 17 and 18: exactly one unsigned 32-bit maxMessageSizeBytes, when present.
    var maxMessageSizeBytes: Int64 = 0
    if let value = maxSizeValues.first {
      guard maxSizeValues.count == 1, !value.isEmpty else {
        return .failure(
          .invalidRequest(
            options("maxMessageSizeBytes must be one unsigned 32-bit integer"),
            reason: "v2_invalid_max_message_size"))
      }
      guard let size = parseUInt32(value) else {
        return .failure(
          .invalidRequest(
            options("invalid maxMessageSizeBytes \(goQuote(value))"),
            reason: "v2_invalid_max_message_size"))
      }
      maxMessageSizeBytes = Int64(size)
    }
    // Rows 20 and 21: a non-negative int64 cursor, when not empty.
    var cursor: Int64? = nil
    if let value = first["cursor"], !value.isEmpty {
      guard let parsed = SubscribeOptions.parseInt64(value) else {
        return .failure(
          .invalidRequest(
            "subscribe: invalid cursor: \(goQuote(value))", reason: "v2_invalid_cursor"))
      }
      guard parsed >= 0 else {
        return .failure(
          .invalidRequest(
            "subscribe: invalid cursor: negative value \(parsed)", reason: "v2_invalid_cursor"))
      }
      cursor = parsed
    }
    return .success(
      V2Options(
        filter: filter, maxMessageSizeBytes: maxMessageSizeBytes, zstdDictionary: zstdDictionary,
        cursor: cursor))
  }

  /// The message of a rejected option: `subscribe: invalid options: <what>`.
  private static func options(_ what: String) -> String { "subscribe: invalid options: \(what)" }

  /// Rows 9–16 as XRPC errors.
  static func filterError(_ invalid: EventFilter.V2Invalid) -> XRPCError {
    let message: String
    let reason: String
    switch invalid {
    case .tooManyKinds(let count):
      (message, reason) = ("too many kinds values: \(count) > 4", "v2_too_many_kinds")
    case .unknownKind(let value):
      message =
        "unknown kind \(goQuote(value)) (valid: commit, identity, account, sync)"
      reason = "v2_invalid_kind"
    case .tooManyDIDs(let count):
      (message, reason) = ("too many dids values: \(count) > 10000", "v2_too_many_dids")
    case .tooManyCollections(let count):
      (message, reason) = (
        "too many collections values: \(count) > 100", "v2_too_many_collections"
      )
    case .did(let value): (message, reason) = ("invalid DID: \(value)", "v2_invalid_did")
    case .collectionWildcard(let value):
      (message, reason) = (
        "invalid collection wildcard: \(value)", "v2_invalid_collection_wildcard"
      )
    case .collection(let value):
      (message, reason) = ("invalid collection: \(value)", "v2_invalid_collection")
    case .collectionsWithoutCommit:
      message = "collections filter can never apply: kinds excludes commit"
      reason = "v2_collections_without_commit"
    }
    return .invalidRequest(options(message), reason: reason)
  }

  /// Go's `strconv.ParseUint(s, 10, 32)`: decimal digits only (no sign; leading zeros fine), in
  /// range.
  static func parseUInt32(_ text: String) -> UInt32? {
    guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
    var value: UInt32 = 0
    for byte in text.utf8 {
      let (times, overflow1) = value.multipliedReportingOverflow(by: 10)
      let (sum, overflow2) = times.addingReportingOverflow(UInt32(byte - 48))
      guard !overflow1, !overflow2 else { return nil }
      value = sum
    }
    return value
  }
}

// MARK: - The websocket handshake

extension V2Request {
  /// Why a request that passed validation is still not a websocket handshake, answered in plain
  /// text as Go's websocket library (coder/websocket `verifyClientRequest`) answers it.
  public struct HandshakeFailure: Equatable, Sendable {
    public let status: HTTPResponseStatus
    public let message: String
    /// Headers that go with the answer (`Upgrade`/`Connection` on a 426, the supported
    /// `Sec-WebSocket-Version` on a bad version).
    public let headers: [(name: String, value: String)]

    public static func == (a: Self, b: Self) -> Bool {
      a.status == b.status && a.message == b.message
        && a.headers.map(\.name) == b.headers.map(\.name)
        && a.headers.map(\.value) == b.headers.map(\.value)
    }
  }

  /// The checks of PROTOCOL-v2 §1.1 in coder/websocket's order: 426 for HTTP/1.0 or a missing
  /// `Connection: Upgrade` / `Upgrade: websocket` (tokens, any case), 405 for a method other
  /// than GET, 400 for a version other than `13` or a `Sec-WebSocket-Key` that is missing,
  /// repeated or not 16 bytes of base64. nil: a proper handshake.
  public static func handshakeFailure(_ head: HTTPRequestHead) -> HandshakeFailure? {
    let upgradeHeaders = [
      (name: "Connection", value: "Upgrade"), (name: "Upgrade", value: "websocket"),
    ]
    if head.version.major < 1 || (head.version.major == 1 && head.version.minor < 1) {
      return HandshakeFailure(
        status: .upgradeRequired,
        message: "WebSocket protocol violation: handshake request must be at least HTTP/1.1: "
          + goQuote("HTTP/\(head.version.major).\(head.version.minor)"),
        headers: [])
    }
    if !containsToken(head.headers, "Connection", "upgrade") {
      return HandshakeFailure(
        status: .upgradeRequired,
        message: "WebSocket protocol violation: Connection header "
          + goQuote(head.headers.first(name: "Connection") ?? "") + " does not contain Upgrade",
        headers: upgradeHeaders)
    }
    if !containsToken(head.headers, "Upgrade", "websocket") {
      return HandshakeFailure(
        status: .upgradeRequired,
        message: "WebSocket protocol violation: Upgrade header "
          + goQuote(head.headers.first(name: "Upgrade") ?? "") + " does not contain websocket",
        headers: upgradeHeaders)
    }
    if head.method != .GET {
      return HandshakeFailure(
        status: .methodNotAllowed,
        message: "WebSocket protocol violation: handshake request method is not GET but "
          + goQuote(head.method.rawValue),
        headers: [])
    }
    let version = head.headers.first(name: "Sec-WebSocket-Version") ?? ""
    if version != "13" {
      return HandshakeFailure(
        status: .badRequest,
        message: "unsupported WebSocket protocol version (only 13 is supported): "
          + goQuote(version),
        headers: [(name: "Sec-WebSocket-Version", value: "13")])
    }
    let keys = head.headers["Sec-WebSocket-Key"]
    guard let key = keys.first else {
      return HandshakeFailure(
        status: .badRequest, message: "WebSocket protocol violation: missing Sec-WebSocket-Key",
        headers: [])
    }
    guard keys.count == 1 else {
      return HandshakeFailure(
        status: .badRequest,
        message: "WebSocket protocol violation: multiple Sec-WebSocket-Key headers", headers: [])
    }
    let trimmed = trimmingSpaces(Substring(key))
    guard isBase64Of16Bytes(trimmed) else {
      return HandshakeFailure(
        status: .badRequest,
        message: "WebSocket protocol violation: invalid Sec-WebSocket-Key "
          + goQuote(String(trimmed)),
        headers: [])
    }
    return nil
  }

  /// Whether any value of header `name`, split on commas, trimmed and lowercased, is `token`.
  private static func containsToken(_ headers: HTTPHeaders, _ name: String, _ token: String)
    -> Bool
  {
    headers[name].contains { value in
      value.split(separator: ",", omittingEmptySubsequences: false).contains {
        trimmingSpaces($0).lowercased() == token
      }
    }
  }

  private static func trimmingSpaces(_ text: Substring) -> Substring {
    let isSpace = { (c: Character) in c == " " || c == "\t" || c == "\r" || c == "\n" }
    guard let start = text.firstIndex(where: { !isSpace($0) }),
      let end = text.lastIndex(where: { !isSpace($0) })
    else { return "" }
    return text[start...end]
  }

  /// Standard padded base64 of exactly 16 bytes: 22 alphabet characters and `==`.
  private static func isBase64Of16Bytes(_ text: Substring) -> Bool {
    let bytes = Array(text.utf8)
    guard bytes.count == 24, bytes[22] == UInt8(ascii: "="), bytes[23] == UInt8(ascii: "=")
    else { return false }
    return bytes[..<22].allSatisfy { byte in
      (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
        || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
        || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
        || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "/")
    }
  }
}
