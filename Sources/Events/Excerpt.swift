/// A short, printable excerpt of bytes from outside for a log line or an error: at most `limit`
/// bytes, anything but printable ASCII shown as `?`, and `…` when cut, so that whatever a peer
/// sends cannot make a log line long or unreadable.
public enum Excerpt {
  public static func of(_ bytes: some Collection<UInt8>, limit: Int = 80) -> String {
    let shown = bytes.prefix(limit).map { (0x20...0x7E).contains($0) ? $0 : UInt8(ascii: "?") }
    return String(decoding: shown, as: UTF8.self) + (bytes.count > limit ? "…" : "")
  }

  public static func of(_ text: String, limit: Int = 80) -> String { of(text.utf8, limit: limit) }
}
