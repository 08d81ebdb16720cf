import Events
import URLQuery

/// A validated `GET /replicate` (OPERATIONS §10): an edge asks a primary for every log record
/// after `after` (a `time_us`; 0: from the oldest retained), optionally only the commits of some
/// collections and the events of some DIDs (the edge's ingest filter, passed upstream).
public struct ReplicationRequest: Sendable, Equatable {
  public static let path = "/replicate"
  public var after: Int64
  public var filter: EventFilter

  /// Parses the query (without `?`): `after`, repeated `collections` and `dids` (as on the v2
  /// wire). The rejection's body is the 400's text.
  public static func parse(query: Substring) -> Result<
    ReplicationRequest, SubscribeOptions.Rejection
  > {
    var after: Int64 = 0
    var collections: [String] = []
    var dids: [String] = []
    for (key, value) in QueryString.parse(query) {
      switch key {
      case "after":
        guard let parsed = SubscribeOptions.parseInt64(value), parsed >= 0 else {
          return .failure(
            .init(
              body: "invalid replication request: invalid after: \(value)", reason: "replica_after")
          )
        }
        after = parsed
      case "collections": collections.append(value)
      case "dids": dids.append(value)
      default: break
      }
    }
    do {
      let filter = try EventFilter(v2Kinds: [], dids: dids, collections: collections)
      return .success(ReplicationRequest(after: after, filter: filter))
    } catch {
      let message = V2Request.filterError(error).message
      return .failure(
        .init(body: "invalid replication request: \(message)", reason: "replica_filter"))
    }
  }
}
