import Compression
import NIOCore
import NIOHTTP1
import URLQuery

/// Request routing shared by the upgrader and the plain HTTP handler.
enum Route {
  /// The parsed options of a `GET /subscribe`, or nil for anything else.
  static func subscribeOptions(_ head: HTTPRequestHead) -> Result<
    SubscribeOptions, SubscribeOptions.Rejection
  >? {
    let (path, query) = QueryString.split(head.uri)
    guard head.method == .GET, path == "/subscribe" else { return nil }
    return SubscribeOptions.parse(
      query: query, socketEncoding: head.headers.first(name: "Socket-Encoding"))
  }

  /// The parsed request of a `GET /replicate`, or nil for anything else.
  static func replication(_ head: HTTPRequestHead) -> Result<
    ReplicationRequest, SubscribeOptions.Rejection
  >? {
    let (path, query) = QueryString.split(head.uri)
    guard head.method == .GET, path == ReplicationRequest.path else { return nil }
    return ReplicationRequest.parse(query: query)
  }

  /// The parsed options of a `GET /xrpc/network.bsky.jetstream.subscribeEvents` (PROTOCOL-v2
  /// §1.2 rows 2–18 and 20–21), or nil for anything else (HEAD included: it is validated, then
  /// refused as no handshake, by the HTTP handler). `dictionaryID` is the server's current one.
  static func v2Options(_ head: HTTPRequestHead, dictionaryID: UInt32) -> Result<
    V2Options, XRPCError
  >? {
    let (path, query) = QueryString.split(head.uri)
    guard head.method == .GET, path == V2Request.path else { return nil }
    return V2Request.parse(query: query, headers: head.headers, dictionaryID: dictionaryID)
  }
}

/// Answers requests that are not websocket upgrades: `/subscribe` without a handshake (400 with
/// the reason), `/dictionary`, `/healthz`, `/readyz`, `/metrics` and the configured pages. Every
/// resource answers GET and HEAD, and OPTIONS for browsers' preflights; every answer allows any
/// origin (`Access-Control-Allow-Origin: *`: the data is public and no credentials are used).
///
/// The v2 wire's XRPC paths answer as PROTOCOL-v2 says: `getZstdDictionary` (§5), and
/// `subscribeEvents` requests that were not upgraded — an XRPC JSON error for a request the
/// server refuses (§1.2), else the websocket library's plain-text 426/405/400 for what is no
/// handshake (§1.1), and 501 `MethodNotImplemented` for methods other than GET and HEAD.
final class HTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundOut = HTTPServerResponsePart

  private let dictionary: ZstdDictionary
  private let metrics: SubscribeMetrics
  private let configuration: SubscribeServer.Configuration
  private let gate: ConnectionGuard
  private var head: HTTPRequestHead?
  /// Set at accept when the connection is over its address's limit (every request gets it), or
  /// by the upgrader when the limits refused this request's subscription.
  var refusal: ConnectionLimits.Refusal?
  /// Set by the upgrader when it refuses a v2 subscription that passed `V2Request.parse` on the
  /// server's state (PROTOCOL-v2 §1.2 rows 1, 19, 22, 23); the next `subscribeEvents` request
  /// gets it as its answer.
  var xrpcRefusal: XRPCError?
  /// `getZstdDictionary`: one per process and dictionary unless the server passes its own.
  private lazy var dictionaryEndpoint = DictionaryEndpoint.shared(for: dictionary)

  static let allowedMethods = "GET, HEAD, OPTIONS"

  init(
    dictionary: ZstdDictionary, metrics: SubscribeMetrics,
    configuration: SubscribeServer.Configuration, gate: ConnectionGuard,
    dictionaryEndpoint: DictionaryEndpoint? = nil
  ) {
    self.dictionary = dictionary
    self.metrics = metrics
    self.configuration = configuration
    self.gate = gate
    if let dictionaryEndpoint { self.dictionaryEndpoint = dictionaryEndpoint }
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .head(let head): self.head = head
    case .body: break
    case .end:
      guard let head else { return }
      self.head = nil
      gate.requestReceived()
      respond(context, to: head)
    }
  }

  /// What one request gets.
  private struct Answer {
    var status: HTTPResponseStatus
    var headers = HTTPHeaders()
    var body: [UInt8]

    init(_ status: HTTPResponseStatus, _ text: String) {
      self.status = status
      headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
      body = Array(text.utf8)
    }

    init(_ status: HTTPResponseStatus, contentType: String, body: [UInt8]) {
      self.status = status
      headers.add(name: "Content-Type", value: contentType)
      self.body = body
    }

    /// An XRPC error's JSON.
    init(_ error: XRPCError) {
      self.init(error.status, contentType: XRPCError.contentType, body: error.body)
    }

    init(_ response: DictionaryEndpoint.Response) {
      status = response.status
      headers = response.headers
      body = response.body
    }
  }

  private func respond(_ context: ChannelHandlerContext, to request: HTTPRequestHead) {
    // A refused websocket handshake ends the connection: the client asked for another protocol.
    var head = request
    if head.headers.contains(name: "Upgrade") {
      head.headers.replaceOrAdd(name: "Connection", value: "close")
    }
    let client = gate.clientAddress(head)
    if let refusal {
      metrics.refused(refusal.reason)
      configuration.logger.notice(
        "subscription refused",
        metadata: [
          "address": "\(client)", "status": "\(refusal.status.code)", "reason": "\(refusal.reason)",
        ])
      return send(context, Answer(refusal.status, refusal.body), head: head, keepAlive: false)
    }
    let (path, query) = QueryString.split(head.uri)
    guard exists(path) else {
      return send(context, Answer(.notFound, "not found"), head: head)
    }
    switch (head.method, path) {
    case (.OPTIONS, _): break
    case (_, V2Request.path):
      // Judged on the request as sent (`head` has had its Connection header rewritten).
      return send(context, subscribeEvents(request, query: query, client: client), head: head)
    case (_, DictionaryEndpoint.path):
      let response = dictionaryEndpoint.respond(
        method: head.method, query: query, headers: head.headers)
      return send(context, Answer(response), head: head)
    default: break
    }
    switch head.method {
    case .OPTIONS:
      var answer = Answer(.noContent, contentType: "text/plain; charset=utf-8", body: [])
      answer.headers.add(name: "Allow", value: Self.allowedMethods)
      answer.headers.add(name: "Access-Control-Allow-Methods", value: Self.allowedMethods)
      answer.headers.add(
        name: "Access-Control-Allow-Headers",
        value: head.headers.first(name: "Access-Control-Request-Headers") ?? "*")
      answer.headers.add(name: "Access-Control-Max-Age", value: "86400")
      send(context, answer, head: head)
    case .GET, .HEAD:
      send(context, answer(path, head, client: client), head: head)
    default:
      var answer = Answer(.methodNotAllowed, "method not allowed")
      answer.headers.add(name: "Allow", value: Self.allowedMethods)
      send(context, answer, head: head)
    }
  }

  private func exists(_ path: Substring) -> Bool {
    switch path {
    case "/subscribe", "/dictionary", "/healthz", "/readyz", V2Request.path,
      DictionaryEndpoint.path, ReplicationRequest.path:
      true
    case "/metrics": configuration.metricsText != nil
    case "/": configuration.pages["/status"] != nil
    default: configuration.pages[String(path)] != nil
    }
  }

  /// The answer to a `subscribeEvents` request that was not upgraded (PROTOCOL-v2 §1.1–1.2).
  private func subscribeEvents(_ head: HTTPRequestHead, query: Substring, client: String)
    -> Answer
  {
    guard head.method == .GET || head.method == .HEAD else {
      return Answer(.methodNotImplemented)
    }
    if let refusal = xrpcRefusal {
      xrpcRefusal = nil
      return rejected(refusal, client: client)
    }
    // Row 1: Contrail has no bootstrap; it is not ready when `/readyz` says so.
    if let why = configuration.readiness() {
      return rejected(.notReady(why), client: client)
    }
    let options = V2Request.parse(query: query, headers: head.headers, dictionaryID: dictionary.id)
    if case .failure(let error) = options {
      return rejected(error, client: client)
    }
    guard let failure = V2Request.handshakeFailure(head) else {
      // A valid handshake that the upgrader did not take, and no reason left for it.
      return rejected(.notReady("the websocket upgrade was not taken"), client: client)
    }
    var answer = Answer(failure.status, failure.message)
    for (name, value) in failure.headers { answer.headers.add(name: name, value: value) }
    return answer
  }

  /// Logs and counts a refused v2 subscription: 503s as refusals, the rest as rejections.
  private func rejected(_ error: XRPCError, client: String) -> Answer {
    if error.status == .serviceUnavailable {
      metrics.refused(error.reason)
    } else {
      metrics.rejected(error.reason)
    }
    configuration.logger.notice(
      "subscribe request rejected",
      metadata: [
        "address": "\(client)", "status": "\(error.status.code)", "reason": "\(error.reason)",
        "wire": "v2",
      ])
    return Answer(error)
  }

  /// The answer to a GET (or HEAD) of an existing resource.
  private func answer(_ path: Substring, _ head: HTTPRequestHead, client: String) -> Answer {
    switch path {
    case "/subscribe":
      switch Route.subscribeOptions(head) {
      case .failure(let rejection)?:
        metrics.rejected(rejection.reason)
        configuration.logger.notice(
          "subscribe request rejected",
          metadata: ["address": "\(client)", "reason": "\(rejection.reason)"])
        return Answer(.badRequest, rejection.body)
      default:
        return Answer(.badRequest, "a websocket handshake is required")
      }
    case ReplicationRequest.path:
      guard configuration.allowsReplication(to: client) else {
        return Answer(.forbidden, "replication is not allowed from \(client)")
      }
      if case .failure(let rejection)? = Route.replication(head) {
        metrics.rejected(rejection.reason)
        return Answer(.badRequest, rejection.body)
      }
      return Answer(.badRequest, "a websocket handshake is required")
    case "/dictionary":
      var answer = Answer(
        .ok, contentType: "application/octet-stream", body: dictionary.bytes)
      answer.headers.add(name: "Zstd-Dictionary-Id", value: String(dictionary.id))
      return answer
    case "/metrics":
      return Answer(
        .ok, contentType: "text/plain; version=0.0.4; charset=utf-8",
        body: configuration.metricsText?() ?? [])
    case "/readyz":
      return configuration.readiness().map { Answer(.serviceUnavailable, $0) }
        ?? Answer(.ok, "ready")
    case "/healthz":
      return Answer(.ok, "ok")
    case "/":
      var answer = Answer(.found, "see /status")
      answer.headers.add(name: "Location", value: "/status")
      return answer
    default:
      guard let page = configuration.pages[String(path)]?() else {
        return Answer(.notFound, "not found")
      }
      var answer = Answer(.ok, contentType: page.contentType, body: page.body)
      answer.headers.add(name: "Cache-Control", value: "no-store")
      return answer
    }
  }

  private func send(
    _ context: ChannelHandlerContext, _ answer: Answer, head: HTTPRequestHead,
    keepAlive: Bool? = nil
  ) {
    let keepAlive = keepAlive ?? head.isKeepAlive
    var headers = answer.headers
    headers.add(name: "Access-Control-Allow-Origin", value: "*")
    // A 304 describes the 200 it stands for; a length of 0 would contradict it.
    if answer.status != .notModified {
      headers.add(name: "Content-Length", value: String(answer.body.count))
    }
    gate.responded(keepAlive: keepAlive)
    if !keepAlive {
      let connection = headers.first(name: "Connection")
      headers.replaceOrAdd(name: "Connection", value: connection.map { "\($0), close" } ?? "close")
    }
    context.write(
      wrapOutboundOut(
        .head(HTTPResponseHead(version: .http1_1, status: answer.status, headers: headers))),
      promise: nil)
    if head.method != .HEAD && !answer.body.isEmpty {
      context.write(
        wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: answer.body)))), promise: nil)
    }
    let channel = context.channel
    context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
      if !keepAlive { channel.close(promise: nil) }
    }
  }
}
