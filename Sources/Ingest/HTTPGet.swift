import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One HTTP/1.1 GET over NIO (TLS when given a context), for small resources such as a server's
/// `/dictionary`: the status and the body, refused beyond `maxBytes`.
public enum HTTPGet {
  public struct Response: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]
  }

  public struct TooLarge: Error, CustomStringConvertible {
    public var description: String { "the response is larger than allowed" }
  }

  public static func fetch(
    host: String, port: Int, path: String, tls: NIOSSLContext?, maxBytes: Int = 16 << 20,
    timeout: TimeAmount = .seconds(10)
  ) async throws -> Response {
    let promise = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: Response.self)
    let connecting = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .connectTimeout(timeout)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          if let tls {
            let name = host.first!.isNumber || host.contains(":") ? nil : host
            try channel.pipeline.syncOperations.addHandler(
              try NIOSSLClientHandler(context: tls, serverHostname: name))
          }
          try channel.pipeline.syncOperations.addHTTPClientHandlers()
          try channel.pipeline.syncOperations.addHandler(
            Collector(promise: promise, maxBytes: maxBytes, timeout: timeout))
        }
      }
      .connect(host: host, port: port)
    let channel: Channel
    do {
      channel = try await connecting.get()
    } catch {
      promise.fail(error)  // nobody else will complete it
      throw error
    }
    var headers = HTTPHeaders()
    headers.add(name: "Host", value: host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)")
    headers.add(name: "User-Agent", value: "contrail")
    headers.add(name: "Connection", value: "close")
    let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)
    channel.write(HTTPClientRequestPart.head(head), promise: nil)
    channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
    defer { channel.close(promise: nil) }
    return try await promise.futureResult.get()
  }

  /// Gathers the response and completes the promise exactly once (a timeout, an error or the
  /// connection's end complete it too if the response has not).
  private final class Collector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let promise: EventLoopPromise<Response>
    private let maxBytes: Int
    private let timeout: TimeAmount
    private var response = Response(status: 0, headers: [], body: [])
    private var done = false
    private var timer: Scheduled<Void>?

    init(promise: EventLoopPromise<Response>, maxBytes: Int, timeout: TimeAmount) {
      self.promise = promise
      self.maxBytes = maxBytes
      self.timeout = timeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
      let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
      timer = context.eventLoop.scheduleTask(in: timeout) {
        bound.value.0.finish(
          bound.value.1, .failure(ChannelError.connectTimeout(bound.value.0.timeout)))
      }
    }

    private func finish(_ context: ChannelHandlerContext, _ result: Result<Response, Error>) {
      guard !done else { return }
      done = true
      timer?.cancel()
      promise.completeWith(result)
      context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
      switch unwrapInboundIn(data) {
      case .head(let head):
        response.status = Int(head.status.code)
        response.headers = head.headers.map { ($0.name, $0.value) }
      case .body(var buffer):
        guard buffer.readableBytes <= maxBytes - response.body.count else {
          return finish(context, .failure(TooLarge()))
        }
        response.body += buffer.readBytes(length: buffer.readableBytes) ?? []
      case .end:
        finish(context, .success(response))
      }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
      finish(context, .failure(error))
    }

    func channelInactive(context: ChannelHandlerContext) {
      finish(context, .failure(ChannelError.eof))
      context.fireChannelInactive()
    }
  }
}
