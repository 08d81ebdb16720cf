import Events

/// What a subscriber's text message means (PROTOCOL §7): an `options_update`, something to
/// ignore, or a reason to close. Field names match case-insensitively and the last repeat wins,
/// as with Go's decoder.
enum ClientMessage: Equatable {
  case update(EventFilter, maxMessageSizeBytes: Int64)
  case ignored
  case close(CloseReason)

  static func decode(_ bytes: [UInt8]) -> ClientMessage {
    // Validated without keeping a second copy of a message that may be 10 MB.
    guard String(validating: bytes, as: UTF8.self) != nil, let envelope = JSONValue.parse(bytes)
    else {
      return .close(.badEnvelope)
    }
    let fields: [(String, JSONValue)]
    switch envelope {
    case .null: return .ignored
    case .object(let members): fields = members
    default: return .close(.badEnvelope)
    }
    var type: String? = nil
    switch field("type", in: fields) {
    case nil, .null?: break
    case .string(let value)?: type = value
    default: return .close(.badEnvelope)
    }
    guard type == "options_update" else { return .ignored }
    guard case .object(let payload)? = field("payload", in: fields),
      let collections = strings(field("wantedCollections", in: payload)),
      let dids = strings(field("wantedDids", in: payload)),
      let maxSize = integer(field("maxMessageSizeBytes", in: payload))
    else { return .close(.badPayload) }
    do {
      let filter = try EventFilter(wantedCollections: collections, wantedDIDs: dids)
      return .update(filter, maxMessageSizeBytes: max(0, maxSize))
    } catch {
      return .close(CloseReason(code: 1008, text: error.description, metric: "invalid_options"))
    }
  }

  /// The last member whose name matches case-insensitively.
  private static func field(_ name: String, in members: [(String, JSONValue)]) -> JSONValue? {
    members.last { $0.0.lowercased() == name.lowercased() }?.1
  }

  /// An array of strings; absent or null is empty; anything else fails.
  private static func strings(_ value: JSONValue?) -> [String]? {
    switch value {
    case nil, .null?: return []
    case .array(let items)?:
      var result: [String] = []
      for item in items {
        guard case .string(let s) = item else { return nil }
        result.append(s)
      }
      return result
    default: return nil
    }
  }

  /// A JSON integer in int64 range; absent or null is 0; fractions, exponents and strings fail.
  private static func integer(_ value: JSONValue?) -> Int64? {
    switch value {
    case nil, .null?: return 0
    case .number(let text)?: return text.contains(where: { ".eE".contains($0) }) ? nil : Int64(text)
    default: return nil
    }
  }
}

/// A server-initiated close (PROTOCOL §9): code, reason text and the metric label.
struct CloseReason: Equatable {
  let code: UInt16
  let text: String
  let metric: String

  static let badEnvelope = CloseReason(
    code: 1007, text: "bad SubscriberSourcedMessage envelope", metric: "bad_envelope")
  static let badPayload = CloseReason(
    code: 1007, text: "bad options_update payload", metric: "bad_payload")
  static let tooBig = CloseReason(code: 1009, text: "message too big", metric: "oversize")
  static let internalError = CloseReason(code: 1011, text: "internal error", metric: "internal")
  static let shutdown = CloseReason(code: 1001, text: "server shutting down", metric: "shutdown")
  static let pingTimeout = CloseReason(code: 1008, text: "ping timeout", metric: "ping_timeout")
  /// Retention deleted the subscriber's position before it was read.
  static let tooSlow = CloseReason(code: 1008, text: "consumer too slow", metric: "too_slow")
  /// The slow-consumer policy: lagging more than allowed for longer than allowed.
  static let lagging = CloseReason(code: 1008, text: "consumer too slow", metric: "lagging")
  /// A data frame from a v2 client: that wire is server-push only.
  static let unexpectedData = CloseReason(
    code: 1008, text: "unexpected data message", metric: "data_message")

  /// Reasons over 123 bytes are cut at a UTF-8 boundary at ≤ 120 bytes and get `...`.
  var wireText: String {
    guard text.utf8.count > 123 else { return text }
    var cut = ""
    for character in text.unicodeScalars {
      guard cut.utf8.count + String(character).utf8.count <= 120 else { break }
      cut.unicodeScalars.append(character)
    }
    return cut + "..."
  }
}
