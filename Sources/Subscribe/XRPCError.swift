import Firehose
import NIOHTTP1

/// An XRPC error answer (PROTOCOL-v2 §1.2, §5): a status and the compact JSON body
/// `{"error":"<Name>","message":"<text>"}`, keys in that order, strings escaped as Go's
/// `encoding/json` does (`<`, `>`, `&` as `\u003c`, `\u003e`, `\u0026`), served as
/// `Content-Type: application/json`.
public struct XRPCError: Error, Equatable, Sendable, CustomStringConvertible {
  public let status: HTTPResponseStatus
  /// The XRPC error name clients match on (`InvalidRequest`, `CursorTooOld`, …).
  public let error: String
  public let message: String
  /// The label this rejection is counted under (`contrail_subscribe_rejected_total{reason}`,
  /// or `contrail_subscribe_refused_total{reason}` for a 503): one per row of §1.2.
  public let reason: String

  public static let contentType = "application/json"

  public init(_ status: HTTPResponseStatus, error: String, message: String, reason: String) {
    self.status = status
    self.error = error
    self.message = message
    self.reason = reason
  }

  /// The JSON body, without a final newline.
  public var body: [UInt8] {
    Array(
      ("{\"error\":" + JSONString.quoted(error) + ",\"message\":" + JSONString.quoted(message) + "}")
        .utf8)
  }

  public var description: String { "\(status.code) \(error): \(message)" }
}

extension XRPCError {
  /// `400 InvalidRequest` (most rows of §1.2).
  static func invalidRequest(_ message: String, reason: String) -> XRPCError {
    XRPCError(.badRequest, error: "InvalidRequest", message: message, reason: reason)
  }

  /// Rows 1 and 19: `503 ServiceUnavailable`, `service not ready: <why>` (Go: `bootstrap in
  /// progress`, `cursor replay warming up`).
  public static func notReady(_ why: String) -> XRPCError {
    XRPCError(
      .serviceUnavailable, error: "ServiceUnavailable", message: "service not ready: \(why)",
      reason: "v2_not_ready")
  }

  /// Row 22: a seq cursor below the retention floor.
  public static func cursorTooOld(cursor: Int64, floor: Int64) -> XRPCError {
    XRPCError(
      .badRequest, error: "CursorTooOld",
      message:
        "subscribe: cursor too old: cursor \(cursor) below lookback floor \(floor); "
        + "re-backfill from your last seq",
      reason: "v2_cursor_too_old")
  }

  /// Row 23: the server failed to read what it needed to turn a timestamp cursor into a seq.
  public static let cursorResolutionFailed = XRPCError(
    .serviceUnavailable, error: "ServiceUnavailable",
    message: "service not ready: cursor resolution failed", reason: "v2_cursor_resolution_failed")

  /// `subscribeEvents` with a method other than GET (Go's XRPC mux: 501).
  public static let methodNotImplemented = XRPCError(
    .notImplemented, error: "MethodNotImplemented", message: "method not implemented",
    reason: "v2_method")
}
