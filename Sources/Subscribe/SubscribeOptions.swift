import Events
import URLQuery

/// A validated `/subscribe` request (PROTOCOL §2): filter, start, wire form and extensions.
public struct SubscribeOptions: Sendable, Equatable {
  public var filter: EventFilter
  /// nil: live.
  public var cursor: Int64?
  public var compress: Bool
  public var requireHello: Bool
  /// Skip events whose uncompressed JSON is longer; 0 = no cap.
  public var maxMessageSizeBytes: Int64
  /// Seconds between cursor heartbeats (§10.2); nil = none.
  public var heartbeat: Int?

  /// Why a request was refused before the upgrade: the exact 400 body (no trailing newline) and
  /// the metric label of `contrail_subscribe_rejected_total{reason}`.
  public struct Rejection: Error, Equatable, CustomStringConvertible {
    public let body: String
    public let reason: String
    public var description: String { body }
  }

  /// Parses the query (without `?`) and the `Socket-Encoding` header, running the checks in
  /// PROTOCOL §2.5's order.
  public static func parse(query: Substring, socketEncoding: String?) -> Result<
    SubscribeOptions, Rejection
  > {
    var collections: [String] = []
    var dids: [String] = []
    var first: [String: String] = [:]  // single-valued parameters: Go reads the first value
    for (key, value) in QueryString.parse(query) {
      switch key {
      case "wantedCollections": collections.append(value)
      case "wantedDids": dids.append(value)
      default: if first[key] == nil { first[key] = value }
      }
    }
    let cursorValue = first["cursor"]
    let heartbeatValue = first["heartbeat"]
    var compress = first["compress"] == "true"
    let requireHello = first["requireHello"] == "true"
    let maxSize = max(0, first["maxMessageSizeBytes"].flatMap(parseInt64) ?? 0)
    let filter: EventFilter
    do {
      filter = try EventFilter(wantedCollections: collections, wantedDIDs: dids)
    } catch {
      let reason: String
      switch error {
      case .collection: reason = "invalid_collection"
      case .did: reason = "invalid_did"
      case .tooManyDIDs: reason = "too_many_dids"
      case .tooManyCollections: reason = "too_many_collections"
      }
      return .failure(Rejection(body: error.description, reason: reason))
    }
    var cursor: Int64? = nil
    if let cursorValue, !cursorValue.isEmpty {
      guard let parsed = parseInt64(cursorValue) else {
        return .failure(Rejection(body: "invalid cursor: \(cursorValue)", reason: "invalid_cursor"))
      }
      cursor = parsed
    }
    var heartbeat: Int? = nil
    if let heartbeatValue {
      guard let seconds = parseInt64(heartbeatValue), (1...3600).contains(seconds) else {
        return .failure(
          Rejection(
            body: "invalid subscriber options: invalid heartbeat: \(heartbeatValue)",
            reason: "invalid_heartbeat"))
      }
      heartbeat = Int(seconds)
    }
    if let socketEncoding, socketEncoding.contains("zstd") { compress = true }
    return .success(
      SubscribeOptions(
        filter: filter, cursor: cursor, compress: compress, requireHello: requireHello,
        maxMessageSizeBytes: maxSize, heartbeat: heartbeat))
  }

  /// Go's `strconv.ParseInt(s, 10, 64)`: optional sign, decimal digits (leading zeros fine),
  /// no spaces, in range.
  static func parseInt64(_ text: String) -> Int64? {
    var digits = Substring(text)
    var negative = false
    if let sign = digits.first, sign == "+" || sign == "-" {
      negative = sign == "-"
      digits = digits.dropFirst()
    }
    guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
    var magnitude: UInt64 = 0
    for byte in digits.utf8 {
      let (times, overflow1) = magnitude.multipliedReportingOverflow(by: 10)
      let (sum, overflow2) = times.addingReportingOverflow(UInt64(byte - 48))
      guard !overflow1, !overflow2 else { return nil }
      magnitude = sum
    }
    if negative {
      guard magnitude <= UInt64(Int64.max) + 1 else { return nil }
      return magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)
    }
    return magnitude <= UInt64(Int64.max) ? Int64(magnitude) : nil
  }
}
