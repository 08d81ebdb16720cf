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
}

/// Answers requests that are not websocket upgrades: `/subscribe` without a handshake (400 with
/// the reason), `/dictionary`, `/healthz`, `/readyz`, `/metrics` and the configured pages. Every
/// resource answers GET and HEAD, and OPTIONS for browsers' preflights; every answer allows any
/// origin (`Access-Control-Allow-Origin: *`: the data is public and no credentials are used).
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

  static let allowedMethods = "GET, HEAD, OPTIONS"

  init(
    dictionary: ZstdDictionary, metrics: SubscribeMetrics,
    configuration: SubscribeServer.Configuration, gate: ConnectionGuard
  ) {
    self.dictionary = dictionary
    self.metrics = metrics
    self.configuration = configuration
    self.gate = gate
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
    let path = QueryString.split(head.uri).path
    guard exists(path) else {
      return send(context, Answer(.notFound, "not found"), head: head)
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
    case "/subscribe", "/dictionary", "/healthz", "/readyz": true
    case "/metrics": configuration.metricsText != nil
    case "/": configuration.pages["/status"] != nil
    default: configuration.pages[String(path)] != nil
    }
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
    headers.add(name: "Content-Length", value: String(answer.body.count))
    gate.responded(keepAlive: keepAlive)
    if !keepAlive { headers.add(name: "Connection", value: "close") }
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
