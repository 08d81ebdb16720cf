import NIOCore
import NIOHTTP1
import Synchronization

/// Counts subscriptions in total and per remote address, refuses those over the limits, and paces
/// each address to its events-per-second budget (a token bucket shared by its subscriptions).
final class ConnectionLimits: Sendable {
  /// Why an upgrade was refused: the HTTP status, the body and the metric label.
  struct Refusal: Error, Equatable {
    let status: HTTPResponseStatus
    let body: String
    let reason: String
  }

  private struct Address {
    var connections = 0
    var tokens: Double
    var refilled: NIODeadline
  }

  private let limits: SubscribeServer.Limits
  private let state = Mutex<(total: Int, addresses: [String: Address])>((0, [:]))

  init(_ limits: SubscribeServer.Limits) { self.limits = limits }

  /// Reserves a place for a subscription from `address`, or says why there is none.
  func admit(_ address: String) -> Refusal? {
    state.withLock { state in
      if let max = limits.maxSubscribers, state.total >= max {
        return Refusal(
          status: .serviceUnavailable, body: "too many subscribers: the server is at its limit",
          reason: "max_subscribers")
      }
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
      state.total += 1
      return nil
    }
  }

  /// Gives back the place `admit` reserved.
  func release(_ address: String) {
    state.withLock { state in
      state.total -= 1
      guard var entry = state.addresses[address] else { return }
      entry.connections -= 1
      state.addresses[address] = entry.connections > 0 ? entry : nil
    }
  }

  /// How long `address` must wait before it may be sent more, or nil if it may send now.
  func delay(_ address: String) -> TimeAmount? {
    guard let rate = limits.maxEventsPerSecondPerIP else { return nil }
    return state.withLock { state -> TimeAmount? in
      guard var entry = state.addresses[address] else { return nil }
      let now = NIODeadline.now()
      let elapsed = Double((now - entry.refilled).nanoseconds) / 1e9
      entry.tokens = min(Double(rate), entry.tokens + elapsed * Double(rate))
      entry.refilled = now
      state.addresses[address] = entry
      guard entry.tokens < 0 else { return nil }
      return .nanoseconds(Int64(-entry.tokens / Double(rate) * 1e9) + 1)
    }
  }

  /// Debits `count` sent events from `address`'s budget (it may go into debt; `delay` repays).
  func spend(_ count: Int, _ address: String) {
    guard limits.maxEventsPerSecondPerIP != nil, count > 0 else { return }
    state.withLock { state in state.addresses[address]?.tokens -= Double(count) }
  }
}
