import NIOCore
import Synchronization

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

/// An upstream connection as readiness, the status page and shutdown see it: up or down (and
/// since when), how many connections were made, and the channel `stop` closes.
final class ConnectionState: Sendable {
  private struct State {
    var connected = false
    var connections = 0
    var stopped = false
    var channel: Channel?
    /// When the last connection ended (nil while connected, or before the first one).
    var disconnectedAt: ContinuousClock.Instant?
  }
  private let state = Mutex(State())

  var isConnected: Bool { state.withLock { $0.connected } }
  var connections: Int { state.withLock { $0.connections } }
  var isStopped: Bool { state.withLock { $0.stopped } }

  func isRecentlyConnected(grace: Duration) -> Bool {
    state.withLock { state in
      state.connected || state.disconnectedAt.map { ContinuousClock.now - $0 < grace } ?? false
    }
  }

  /// A connection is up; if `stop` came first it is closed at once.
  func opened(_ channel: Channel) {
    let stopped = state.withLock { state in
      state.connected = !state.stopped
      state.disconnectedAt = nil
      state.connections += 1
      state.channel = channel
      return state.stopped
    }
    if stopped { channel.close(promise: nil) }
  }

  /// The connection ended.
  func closed() {
    state.withLock { state in
      state.connected = false
      state.channel = nil
      state.disconnectedAt = .now
    }
  }

  /// No more connections; the current one is closed.
  func stop() {
    let channel = state.withLock { state -> Channel? in
      state.stopped = true
      return state.channel
    }
    channel?.close(promise: nil)
  }
}
