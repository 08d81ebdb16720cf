import Broadcast
import NIOCore
import NIOHTTP1

/// The first handler of every accepted connection: it holds the connection's places in the
/// limits (given back once, when it closes) and enforces the HTTP timeouts until the upgrade.
///
/// * A request head (and any body) must arrive within `headerTimeout`, counted from the accept,
///   or from the first byte after a keep-alive response; else `408` if the request had begun,
///   or a plain close.
/// * A keep-alive connection with no request for `idleTimeout` is closed.
///
/// Upgraded connections are exempt: websocket pings keep them in check.
final class ConnectionGuard: ChannelInboundHandler {
  typealias InboundIn = ByteBuffer
  typealias InboundOut = ByteBuffer
  typealias OutboundOut = ByteBuffer

  private enum Phase {
    /// Waiting for a complete request; `begun` once a byte of it has arrived.
    case awaitingRequest(begun: Bool)
    /// A request is being answered.
    case answering
    /// Between keep-alive requests.
    case idle
    case upgraded
  }

  /// The peer's address (a trusted proxy's, or the client's).
  private let peer: String
  private let proxies: TrustedProxies
  /// The address whose place this connection holds: the peer's when admitted at accept, or the
  /// client behind a trusted proxy once a subscription is admitted for it.
  private var placeHolder: String?
  private let limits: ConnectionLimits
  private let metrics: SubscribeMetrics
  private let headerTimeout: TimeAmount
  private let idleTimeout: TimeAmount
  private var pending = true
  private var subscriber = false
  private var released = false
  private var phase = Phase.awaitingRequest(begun: false)
  private var timer: Scheduled<Void>?
  private var context: ChannelHandlerContext?
  /// The options of the subscription being upgraded, parsed once by the upgrader's check.
  var options: SubscribeOptions?
  /// For a v2 subscription: its session (the cursor resolved, the publisher).
  var v2: V2Session?
  /// ...and where its feed starts.
  var v2Start: SubscriberFeed.Start?
  /// The subscription being upgraded is an edge's replication stream.
  var replica = false

  /// `admitted`: the peer's place was counted at accept.
  init(
    peer: String, admitted: Bool, limits: ConnectionLimits, metrics: SubscribeMetrics,
    configuration: SubscribeServer.Configuration
  ) {
    self.peer = peer
    proxies = configuration.trustedProxies
    placeHolder = admitted && !configuration.trustedProxies.isTrusted(peer) ? peer : nil
    self.limits = limits
    self.metrics = metrics
    headerTimeout = configuration.headerTimeout
    idleTimeout = configuration.idleTimeout
  }

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    arm(headerTimeout)
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    release()
    self.context = nil
  }

  func channelInactive(context: ChannelHandlerContext) {
    release()
    context.fireChannelInactive()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch phase {
    case .idle:
      phase = .awaitingRequest(begun: true)
      arm(headerTimeout)
    case .awaitingRequest(begun: false): phase = .awaitingRequest(begun: true)
    default: break
    }
    context.fireChannelRead(data)
  }

  /// A whole request has arrived (its end, or an upgrade request's head).
  func requestReceived() {
    switch phase {
    case .awaitingRequest, .idle: break  // idle: pipelined, its bytes came while answering
    case .answering, .upgraded: return
    }
    phase = .answering
    timer?.cancel()
    timer = nil
  }

  /// A response went out; with keep-alive the connection now waits for its next request.
  func responded(keepAlive: Bool) {
    guard case .answering = phase, keepAlive else { return }
    phase = .idle
    arm(idleTimeout)
  }

  /// The upgrader admitted a subscription for this connection.
  func subscribed() { subscriber = true }

  /// Who sent `head`: the peer, or for a trusted proxy the client its headers name.
  func clientAddress(_ head: HTTPRequestHead) -> String {
    proxies.client(peer: peer, headers: head.headers)
  }

  /// For a subscription through a trusted proxy: takes a place of its client's address (held
  /// until the connection closes), or says why there is none.
  func admitProxied(_ head: HTTPRequestHead) -> ConnectionLimits.Refusal? {
    guard proxies.isTrusted(peer), placeHolder == nil else { return nil }
    let client = clientAddress(head)
    if let refusal = limits.admitAddress(client) { return refusal }
    placeHolder = client
    return nil
  }

  /// The websocket upgrade is done: no HTTP timeouts, and no longer pending.
  func upgraded() {
    phase = .upgraded
    timer?.cancel()
    timer = nil
    if pending && !released {
      pending = false
      limits.upgraded()
    }
  }

  private func arm(_ timeout: TimeAmount) {
    timer?.cancel()
    guard let context else { return }
    let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
    timer = context.eventLoop.scheduleTask(in: timeout) { bound.value.expire() }
  }

  private func expire() {
    guard let context else { return }
    timer = nil
    let channel = context.channel
    switch phase {
    case .awaitingRequest(begun: true):
      metrics.httpTimeout("header")
      // Written raw: this handler sits before the HTTP encoder.
      let body = "request timeout"
      let response =
        "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\n"
        + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
      context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: response))).whenComplete { _ in
        channel.close(promise: nil)
      }
      // A client that does not read cannot hold the connection open.
      context.eventLoop.scheduleTask(in: .seconds(1)) { channel.close(promise: nil) }
    case .awaitingRequest(begun: false):
      metrics.httpTimeout("header")
      channel.close(promise: nil)
    case .idle:
      metrics.httpTimeout("idle")
      channel.close(promise: nil)
    case .answering, .upgraded:
      break
    }
  }

  /// Gives back every place this connection holds, once.
  private func release() {
    guard !released else { return }
    released = true
    timer?.cancel()
    timer = nil
    limits.close(placeHolder, pending: pending)
    if subscriber { limits.releaseSubscriber() }
  }
}
