/// Where a server's events come from: a relay (`Ingest`) or, on an edge, a primary
/// (`ReplicaFollower`). The app runs one, asks it for readiness and the status page, and stops it
/// at shutdown.
public protocol Upstream: Sendable {
  /// Connected now.
  var isConnected: Bool { get }
  /// Connections made so far.
  var connections: Int { get }
  /// Connected now, or down for less than `grace` (`/readyz`).
  func isRecentlyConnected(grace: Duration) -> Bool
  /// Connects and reconnects until `stop()`, then returns once what was received is stored.
  func run() async
  func stop()
}

extension Ingest: Upstream {}
extension ReplicaFollower: Upstream {}
