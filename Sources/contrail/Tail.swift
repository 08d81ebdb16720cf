import ArgumentParser
import Compression
import Dispatch
import Foundation
import Ingest
import NIOCore
import NIOSSL
import NIOWebSocket
import Synchronization
import WebSocketClient

/// `contrail tail`: a subscriber that prints events, for people and scripts.
struct Tail: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Subscribe to a Contrail (or Jetstream) server and print its events.",
    discussion: """
      Prints one JSON event per line (or a compact view with --pretty) and, on exit (Ctrl-C, \
      --limit, or the server closing), a one-line summary on standard error. URL is the server \
      (ws://host:port, wss://host, http(s)://…); /subscribe is added when it has no path, or \
      /xrpc/network.bsky.jetstream.subscribeEvents with --v2 (Jetstream's v2 wire: --kind \
      filters, a seq or time_us --cursor, --compress with the dictionary from getZstdDictionary).
      """)

  @Argument(help: "The server, e.g. ws://127.0.0.1:6008.")
  var url: String

  @Option(
    name: .customLong("collection"), help: "A wanted collection (NSID or prefix.*); repeatable.")
  var collections: [String] = []

  @Option(name: .customLong("did"), help: "A wanted DID; repeatable.")
  var dids: [String] = []

  @Option(help: "Replay from this time_us (microseconds since 1970), or with --v2 this seq.")
  var cursor: Int64?

  @Flag(help: "Speak Jetstream's v2 wire (subscribeEvents) instead of /subscribe.")
  var v2 = false

  @Option(
    name: .customLong("kind"),
    help: "With --v2: a wanted kind (commit, identity, account, sync); repeatable.")
  var kinds: [String] = []

  @Flag(help: "Ask for zstd frames (needs the server's dictionary).")
  var compress = false

  @Option(help: "The dictionary for --compress.")
  var dictionary: String?

  @Flag(help: "Fetch the dictionary for --compress from the server's /dictionary.")
  var fetchDictionary = false

  @Option(
    help:
      "PEM certificates to trust for wss:// and https:// (default: $SSL_CERT_FILE, else the system's)."
  )
  var ca: String?

  @Flag(help: "A compact human view instead of JSON lines.")
  var pretty = false

  @Option(help: "Stop after this many events.")
  var limit: Int?

  func validate() throws {
    if compress && dictionary == nil && !fetchDictionary && !v2 {
      throw ValidationError("--compress needs --dictionary FILE or --fetch-dictionary")
    }
    if !kinds.isEmpty && !v2 { throw ValidationError("--kind needs --v2") }
  }

  func run() async throws {
    let (tls, host, port, path) = try Self.parse(url, v2: v2)
    do {
      try await follow(tls: tls, host: host, port: port, path: path)
    } catch let error as CLIError {
      throw error
    } catch {
      throw CLIError(TLSTrust.explain(error, host: host, port: port))
    }
  }

  private func follow(tls: Bool, host: String, port: Int, path: String) async throws {
    let context = tls ? try TLSTrust.clientContext(caFile: ca) : nil
    var query: [String] =
      collections.map { "\(v2 ? "collections" : "wantedCollections")=\(Self.escape($0))" }
    query += dids.map { "\(v2 ? "dids" : "wantedDids")=\(Self.escape($0))" }
    query += kinds.map { "kinds=\(Self.escape($0))" }
    if let cursor { query.append("cursor=\(cursor)") }
    var decompressor: EventDecompressor? = nil
    if compress {
      let bytes: [UInt8]
      if let dictionary {
        bytes = try FileBytes.read(dictionary)
      } else {
        let resource = v2 ? Self.v2DictionaryPath : "/dictionary"
        let response = try await HTTPGet.fetch(
          host: host, port: port, path: resource, tls: context)
        guard response.status == 200 else {
          throw CLIError("\(host):\(port)\(resource) answered HTTP \(response.status)")
        }
        bytes = response.body
      }
      let parsed = try ZstdDictionary(bytes: bytes)
      query.append(v2 ? "zstdDictionary=\(parsed.id)" : "compress=true")
      decompressor = try EventDecompressor(dictionary: parsed)
    }
    let target = path + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
    let printer = TailPrinter(pretty: pretty, limit: limit, decompressor: decompressor)
    let channel = try await WebSocketDialer.connect(
      host: host, port: port, target: target, tls: context
    ) { channel in
      try channel.pipeline.syncOperations.addHandlers(
        NIOWebSocketFrameAggregator(
          minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 10_000,
          maxAccumulatedFrameSize: 16 << 20),
        TailHandler(printer: printer))
    }
    let signals = [SIGINT, SIGTERM].map { number in
      signal(number, SIG_IGN)
      let source = DispatchSource.makeSignalSource(signal: number)
      source.setEventHandler { channel.close(promise: nil) }
      source.resume()
      return source
    }
    try? await channel.closeFuture.get()
    for source in signals { source.cancel() }
    printer.finish()
  }

  static let v2Path = "/xrpc/network.bsky.jetstream.subscribeEvents"
  static let v2DictionaryPath = "/xrpc/network.bsky.jetstream.getZstdDictionary"

  /// (tls, host, port, path) of a server URL: without a path, the subscribe resource of the
  /// wire.
  static func parse(_ url: String, v2: Bool = false) throws -> (Bool, String, Int, String) {
    let endpoint = try RelayEndpoint(url)
    let defaulted =
      endpoint.target == RelayEndpoint.subscribePath
      || endpoint.target.hasPrefix(RelayEndpoint.subscribePath + "?")
    let path = defaulted ? (v2 ? v2Path : "/subscribe") : endpoint.target
    return (endpoint.tls, endpoint.host, endpoint.port, path)
  }

  static func escape(_ value: String) -> String {
    value.addingPercentEncoding(
      withAllowedCharacters: .urlQueryAllowed.subtracting(["&", "+", "="]))
      ?? value
  }
}

/// Prints what the handler receives, keeps the tally, and writes the summary.
final class TailPrinter: @unchecked Sendable {
  private let pretty: Bool
  private let limit: Int?
  private let decompressor: EventDecompressor?
  // Used from one event loop only (the connection's).
  private var events = 0
  private var wireBytes = 0
  private var jsonBytes = 0
  private var output: [UInt8] = []
  private let started = ContinuousClock.now
  private(set) var closeNote: String?

  init(pretty: Bool, limit: Int?, decompressor: EventDecompressor?) {
    self.pretty = pretty
    self.limit = limit
    self.decompressor = decompressor
  }

  /// False once `limit` events are printed.
  func take(_ frame: WebSocketFrame) -> Bool {
    var data = frame.unmaskedData
    let wire = data.readableBytes
    var json = data.readBytes(length: wire) ?? []
    if frame.opcode == .binary {
      guard let decompressor, let decoded = try? decompressor.decompress(json) else {
        FileHandle.standardError.write(Data("cannot decompress a binary frame\n".utf8))
        return true
      }
      json = decoded
    }
    events += 1
    wireBytes += wire
    jsonBytes += json.count
    if pretty { output += Array(Self.compact(json).utf8) } else { output += json }
    output.append(UInt8(ascii: "\n"))
    return limit.map { events < $0 } ?? true
  }

  func flush() {
    guard !output.isEmpty else { return }
    FileHandle.standardOutput.write(Data(output))
    output.removeAll(keepingCapacity: true)
  }

  func closed(code: UInt16?, reason: String) {
    closeNote = "server closed: \(code.map(String.init) ?? "-") \(reason)"
  }

  func finish() {
    flush()
    let elapsed = ContinuousClock.now - started
    let seconds =
      Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    var summary =
      "\(events) events, \(jsonBytes) bytes of JSON (\(wireBytes) on the wire) in "
      + "\(String(format: "%.1f", seconds)) s, \(Int(Double(events) / max(seconds, 1e-3))) events/s"
    if let closeNote { summary += "; \(closeNote)" }
    FileHandle.standardError.write(Data((summary + "\n").utf8))
  }

  /// `12:00:01.234 commit create app.bsky.feed.post did:plc:… rkey  "text…"`.
  static func compact(_ json: [UInt8]) -> String {
    guard var object = try? JSONSerialization.jsonObject(with: Data(json)) as? [String: Any] else {
      return String(decoding: json, as: UTF8.self)
    }
    if let payload = object["payload"] as? [String: Any] {
      // A v2 frame: shown like the v1 event it carries.
      let type = payload["$type"] as? String ?? ""
      let kind = type.split(separator: "#").last.map(String.init) ?? "?"
      guard kind != "info" else {
        return "info \(payload["name"] ?? "?"): \(payload["message"] ?? "")"
      }
      object = payload
      object["kind"] = kind
      object["time_us"] = nil
      if kind == "commit" { object["commit"] = payload }
    } else if object["$type"] as? String == "error" {
      return "error \(object["error"] ?? "?"): \(object["message"] ?? "")"
    }
    let time =
      (object["time_us"] as? Int).map {
        let date = Date(timeIntervalSince1970: Double($0) / 1e6)
        let formatter = DateFormatter()
        formatter.dateFormat = "HH:mm:ss.SSS"
        return formatter.string(from: date)
      } ?? (object["time"] as? String).map { String($0.dropFirst(11).prefix(12)) } ?? "-"
    let kind = object["kind"] as? String ?? "?"
    let did = object["did"] as? String ?? "?"
    var line = "\(time) \(kind.padding(toLength: 8, withPad: " ", startingAt: 0)) \(did)"
    if let commit = object["commit"] as? [String: Any] {
      line += " \(commit["operation"] as? String ?? "?") \(commit["collection"] as? String ?? "?")"
      line += "/\(commit["rkey"] as? String ?? "?")"
      if let record = commit["record"] as? [String: Any], let text = record["text"] as? String {
        let flat = text.replacingOccurrences(of: "\n", with: " ")
        line += " \"\(flat.count > 80 ? String(flat.prefix(79)) + "…" : flat)\""
      }
    } else if let identity = object["identity"] as? [String: Any] {
      line += " handle=\(identity["handle"] as? String ?? "-")"
    } else if let account = object["account"] as? [String: Any] {
      line += " active=\(account["active"] as? Bool ?? false)"
    }
    return line
  }
}

/// Hands messages to the printer, flushes once per socket read, answers pings, and closes at
/// the limit.
final class TailHandler: ChannelInboundHandler {
  typealias InboundIn = WebSocketFrame
  typealias OutboundOut = WebSocketFrame

  private let printer: TailPrinter
  private var done = false

  init(printer: TailPrinter) { self.printer = printer }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let frame = unwrapInboundIn(data)
    switch frame.opcode {
    case .text, .binary:
      guard !done else { return }
      if !printer.take(frame) {
        done = true
        printer.flush()
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.normalClose)).whenComplete { _ in
          channel.close(promise: nil)
        }
      }
    case .ping:
      context.writeAndFlush(wrapOutboundOut(.pong(answering: frame)), promise: nil)
    case .connectionClose:
      var data = frame.unmaskedData
      let code = data.readInteger(as: UInt16.self)
      if !done {
        printer.closed(code: code, reason: data.readString(length: data.readableBytes) ?? "")
      }
      context.close(promise: nil)
    default:
      break
    }
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    printer.flush()
    context.fireChannelReadComplete()
  }
}
