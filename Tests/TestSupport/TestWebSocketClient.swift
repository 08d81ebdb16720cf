import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import Synchronization
import WebSocketClient

/// A real websocket client for end-to-end tests: connects over TCP, upgrades, and hands out
/// received messages one at a time, each wait bounded by a timeout.
public final class TestWebSocketClient: Sendable {
  public struct Timeout: Error {}
  public struct NotUpgraded: Error {}

  /// A received message, or the close that ended the connection.
  public enum Message: Sendable, Equatable {
    case binary([UInt8])
    case text(String)
    case close(code: UInt16?, reason: String)
    /// A server ping the client did not answer (`answerPings: false`).
    case ping
  }

  /// Received messages and at most one waiting reader, which a timer can release.
  private final class Inbox: Sendable {
    private struct State {
      var queue: [Message] = []
      var finished = false
      var waiter: (id: Int, continuation: CheckedContinuation<Result<Message?, Timeout>, Never>)?
      var nextID = 0
    }
    private let state = Mutex(State())

    func push(_ message: Message?) {
      let waiter = state.withLock {
        state -> CheckedContinuation<Result<Message?, Timeout>, Never>? in
        if let waiter = state.waiter {
          state.waiter = nil
          if message == nil { state.finished = true }
          return waiter.continuation
        }
        if let message { state.queue.append(message) } else { state.finished = true }
        return nil
      }
      waiter?.resume(returning: .success(message))
    }

    func next(timeout: Duration) async throws -> Message? {
      try await withCheckedContinuation { continuation in
        let (ready, id) = state.withLock { state -> (Result<Message?, Timeout>?, Int) in
          if !state.queue.isEmpty { return (.success(state.queue.removeFirst()), 0) }
          if state.finished { return (.success(nil), 0) }
          state.nextID += 1
          state.waiter = (state.nextID, continuation)
          return (nil, state.nextID)
        }
        if let ready { return continuation.resume(returning: ready) }
        Task {
          try? await Task.sleep(for: timeout)
          let expired = state.withLock {
            state -> CheckedContinuation<Result<Message?, Timeout>, Never>? in
            guard let waiter = state.waiter, waiter.id == id else { return nil }
            state.waiter = nil
            return waiter.continuation
          }
          expired?.resume(returning: .failure(Timeout()))
        }
      }.get()
    }
  }

  private let inbox: Inbox
  private let outbound: AsyncStream<WebSocketFrame>.Continuation
  private let reader: Task<Void, Never>

  private init(_ channel: NIOAsyncChannel<WebSocketFrame, WebSocketFrame>, answerPings: Bool) {
    let inbox = Inbox()
    let (toSend, send) = AsyncStream.makeStream(of: WebSocketFrame.self)
    self.inbox = inbox
    outbound = send
    reader = Task {
      try? await channel.executeThenClose { inbound, writer in
        try await withThrowingTaskGroup(of: Void.self) { group in
          group.addTask {
            for await frame in toSend { try await writer.write(frame) }
            // Closing: give the server time to answer the close frame (the reader returns then).
            try await Task.sleep(for: .seconds(5))
          }
          group.addTask {
            for try await frame in inbound {
              var data = frame.unmaskedData
              switch frame.opcode {
              case .ping where answerPings:
                send.yield(
                  WebSocketFrame(
                    fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData))
              case .ping:
                inbox.push(.ping)
              case .binary: inbox.push(.binary(data.readBytes(length: data.readableBytes) ?? []))
              case .text: inbox.push(.text(data.readString(length: data.readableBytes) ?? ""))
              case .connectionClose:
                let code = data.readInteger(as: UInt16.self)
                inbox.push(
                  .close(code: code, reason: data.readString(length: data.readableBytes) ?? ""))
                return
              default: break
              }
            }
          }
          try await group.next()
          group.cancelAll()
        }
      }
      inbox.push(nil)
    }
  }

  /// Connects to `ws://host:port<target>`. With `answerPings` (as real clients do) server pings
  /// get pongs; without, they are handed out as `.ping` messages and left unanswered.
  public static func connect(
    host: String = "127.0.0.1", port: Int, target: String, answerPings: Bool = true
  )
    async throws -> TestWebSocketClient
  {
    let channel: NIOAsyncChannel<WebSocketFrame, WebSocketFrame>
    do {
      channel = try await WebSocketDialer.connect(
        host: host, port: port, target: target, tls: nil
      ) { try NIOAsyncChannel(wrappingChannelSynchronously: $0) }
    } catch is WebSocketDialer.Refused {
      throw NotUpgraded()
    }
    return TestWebSocketClient(channel, answerPings: answerPings)
  }

  /// The next message; nil once the connection has ended. Throws `Timeout` after `timeout`.
  public func next(timeout: Duration = .seconds(10)) async throws -> Message? {
    try await inbox.next(timeout: timeout)
  }

  /// Sends a text message (in fragments of at most 1 MiB, as browsers do with big messages).
  public func send(text: String) {
    var bytes = ArraySlice(Array(text.utf8))
    var first = true
    repeat {
      let chunk = bytes.prefix(1 << 20)
      bytes = bytes.dropFirst(chunk.count)
      outbound.yield(
        WebSocketFrame(
          fin: bytes.isEmpty, opcode: first ? .text : .continuation, maskKey: .random(),
          data: ByteBuffer(bytes: chunk)))
      first = false
    } while !bytes.isEmpty
  }

  public func send(binary: [UInt8]) {
    outbound.yield(
      WebSocketFrame(
        fin: true, opcode: .binary, maskKey: .random(), data: ByteBuffer(bytes: binary)))
  }

  /// Sends a close frame and waits for the server's answer (at most 5 s), then disconnects.
  public func close() async {
    var data = ByteBuffer()
    data.write(webSocketErrorCode: .normalClosure)
    outbound.yield(
      WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: data))
    outbound.finish()
    await reader.value
  }
}
