import NIOCore
import NIOHTTP1
import Synchronization

/// Counts connections from accept (per remote address, and those not yet upgraded) and
/// subscriptions, refuses those over the limits, and paces each address to its events-per-second
/// budget (a token bucket shared by its subscriptions).
final class ConnectionLimits: Sendable {
  /// Why a request was refused: the HTTP status, the body and the metric label.
  struct Refusal: Error, Equatable {
    let status: HTTPResponseStatus
    let body: String
    let reason: String
  }

  /// What `accept` decided for a new connection.
  enum Admission: Equatable {
    /// Counted against its address and as pending.
    case admitted
    /// Counted as pending only; every request on it is answered with the refusal.
    case refused(Refusal)
    /// Over the pending cap: closed at once, counted nowhere.
    case dropped
  }

  private struct Address {
    var connections = 0
    var tokens: Double
    var refilled: NIODeadline
  }

  private struct State {
    /// Subscriptions (upgraded connections).
    var subscribers = 0
    /// Connections not upgraded (yet).
    var pending = 0
    var addresses: [String: Address] = [:]
  }

  private let limits: SubscribeServer.Limits
  private let state = Mutex(State())

  init(_ limits: SubscribeServer.Limits) { self.limits = limits }

  /// Connections accepted and not upgraded, still open.
  var pending: Int { state.withLock { $0.pending } }

  /// Counts a just-accepted connection from `address`, or says why it may not stay. A
  /// connection from a trusted proxy (`address` nil) is only counted as pending: its client is
  /// known from each request's headers (`admitAddress`).
  func accept(_ address: String?) -> Admission {
    state.withLock { state in
      if let max = limits.maxPendingConnections, state.pending >= max { return .dropped }
      state.pending += 1
      guard let address else { return .admitted }
      if let refusal = Self.admit(address, &state, limits) { return .refused(refusal) }
      return .admitted
    }
  }

  /// Counts a place of `address` (the client behind a trusted proxy), or says why there is none.
  func admitAddress(_ address: String) -> Refusal? {
    state.withLock { Self.admit(address, &$0, limits) }
  }

  private static func admit(
    _ address: String, _ state: inout State, _ limits: SubscribeServer.Limits
  )
    -> Refusal?
  {
    var entry =
      state.addresses[address]
      ?? Address(tokens: Double(limits.maxEventsPerSecondPerIP ?? 0), refilled: .now())
    if let max = limits.maxConnectionsPerIP, entry.connections >= max {
      return Refusal(
        status: .tooManyRequests, body: "too many connections from \(address)",
        reason: "max_per_ip")
    }
    entry.connections += 1
    state.addresses[address] = entry
    return nil
  }

  /// Gives back what `accept` counted: the pending place (unless `upgraded` already did) and
  /// the place of `address` (the connection's, or its proxied client's), if it holds one.
  func close(_ address: String?, pending: Bool) {
    state.withLock { state in
      if pending { state.pending -= 1 }
      guard let address, var entry = state.addresses[address] else { return }
      entry.connections -= 1
      state.addresses[address] = entry.connections > 0 ? entry : nil
    }
  }

  /// The connection upgraded: it is no longer pending.
  func upgraded() { state.withLock { $0.pending -= 1 } }

  /// Reserves a place for a subscription, or says why there is none.
  func admitSubscriber() -> Refusal? {
    state.withLock { state in
      if let max = limits.maxSubscribers, state.subscribers >= max {
        return Refusal(
          status: .serviceUnavailable, body: "too many subscribers: the server is at its limit",
          reason: "max_subscribers")
      }
      state.subscribers += 1
      return nil
    }
  }

  /// Gives back the place `admitSubscriber` reserved.
  func releaseSubscriber() { state.withLock { $0.subscribers -= 1 } }

  /// How long `address` must wait before it may be sent more, or nil if it may send now.
  func delay(_ address: String) -> TimeAmount? {
    guard let rate = limits.maxEventsPerSecondPerIP, rate > 0 else { return nil }
    return state.withLock { state -> TimeAmount? in
      guard var entry = state.addresses[address] else { return nil }
      let now = NIODeadline.now()
      let elapsed = Double((now - entry.refilled).nanoseconds) / 1e9
      entry.tokens = min(Double(rate), entry.tokens + elapsed * Double(rate))
      entry.refilled = now
      state.addresses[address] = entry
      guard entry.tokens < 0 else { return nil }
      // The debt is a few batches at most; capped anyway so the conversion cannot trap.
      return .nanoseconds(Int64(min(-entry.tokens / Double(rate), 3_600) * 1e9) + 1)
    }
  }

  /// Debits `count` sent events from `address`'s budget (it may go into debt; `delay` repays).
  func spend(_ count: Int, _ address: String) {
    guard limits.maxEventsPerSecondPerIP != nil, count > 0 else { return }
    state.withLock { state in state.addresses[address]?.tokens -= Double(count) }
  }
}
