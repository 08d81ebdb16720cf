import ArgumentParser
import Foundation
import Ingest
import NIOCore
import NIOWebSocket
import Synchronization
import WebSocketClient

/// `contrail load-client`: many websocket subscribers in one process that only count what they
/// receive; the other half of `bench fanout`, run as a separate process so the server's CPU time
/// can be measured alone. Prints `ready` once every connection is up, then one result line.
struct LoadClient: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "load-client",
    abstract: "Open N counting subscribers (benchmark helper).",
    shouldDisplay: false)

  @Option var port: Int
  @Option var connections: Int = 1
  @Option var target = "/subscribe"
  @Option(help: "Messages each connection waits for; 0 = stay idle until stdin closes.")
  var expect: Int = 0
  @Option(help: "Give up after this many seconds.")
  var timeout: Int = 300

  func run() async throws {
    let tally = LoadTally(connections: connections)
    var channels: [Channel] = []
    for wave in stride(from: 0, to: connections, by: 100) {  // stay inside the listen backlog
      try await withThrowingTaskGroup(of: Channel.self) { group in
        for _ in wave..<min(wave + 100, connections) {
          group.addTask { try await connect(tally) }
        }
        for try await channel in group { channels.append(channel) }
      }
    }
    emit("ready")
    if expect == 0 {
      _ = FileHandle.standardInput.readDataToEndOfFile()
      return
    }
    let deadline = ContinuousClock.now + .seconds(timeout)
    while !tally.done && ContinuousClock.now < deadline {
      try await Task.sleep(for: .milliseconds(2))
    }
    let result = tally.result
    emit(
      "result messages=\(result.messages) bytes=\(result.bytes) seconds=\(result.seconds) "
        + "complete=\(tally.done)")
    for channel in channels { channel.close(promise: nil) }
  }

  /// One unbuffered line to standard output (the parent waits for it).
  private func emit(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
  }

  private func connect(_ tally: LoadTally) async throws -> Channel {
    let expect = self.expect
    return try await WebSocketDialer.connect(
      host: "127.0.0.1", port: port, target: target, tls: nil
    ) { channel in
      try channel.pipeline.syncOperations.addHandler(CountingHandler(expect: expect, tally: tally))
    }
  }
}

/// Totals across connections, touched once per connection (when it has everything), not per
/// message.
final class LoadTally: Sendable {
  private let state = Mutex<
    (remaining: Int, messages: Int, bytes: Int, first: UInt64, last: UInt64)
  >(
    (0, 0, 0, .max, 0))

  init(connections: Int) { state.withLock { $0.remaining = connections } }

  func finished(messages: Int, bytes: Int, first: UInt64, last: UInt64) {
    state.withLock { state in
      state.remaining -= 1
      state.messages += messages
      state.bytes += bytes
      state.first = min(state.first, first)
      state.last = max(state.last, last)
    }
  }

  var done: Bool { state.withLock { $0.remaining == 0 } }

  /// Messages, bytes, and seconds from the first message to the last, over all connections.
  var result: (messages: Int, bytes: Int, seconds: Double) {
    state.withLock { ($0.messages, $0.bytes, Double($0.last &- $0.first) / 1e9) }
  }
}

/// Counts messages and bytes, answers pings, and reports once `expect` messages have arrived.
final class CountingHandler: ChannelInboundHandler {
  typealias InboundIn = WebSocketFrame
  typealias OutboundOut = WebSocketFrame

  private let expect: Int
  private let tally: LoadTally
  private var messages = 0
  private var bytes = 0
  private var first: UInt64 = 0

  init(expect: Int, tally: LoadTally) {
    self.expect = expect
    self.tally = tally
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let frame = unwrapInboundIn(data)
    switch frame.opcode {
    case .text, .binary:
      if messages == 0 { first = DispatchTime.now().uptimeNanoseconds }
      messages += 1
      bytes += frame.length
      if messages == expect {
        tally.finished(
          messages: messages, bytes: bytes, first: first,
          last: DispatchTime.now().uptimeNanoseconds)
      }
    case .ping:
      context.writeAndFlush(wrapOutboundOut(.pong(answering: frame)), promise: nil)
    default:
      break
    }
  }
}
