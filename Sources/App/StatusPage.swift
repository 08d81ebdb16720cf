import Firehose
import Foundation
import Subscribe

/// A JSON value: what `/status.json` serves and what the HTML page renders from, so the page's
/// server-rendered numbers and its live updates name the same fields.
public enum StatusValue: Sendable {
  case null
  case bool(Bool)
  case int(Int64)
  case number(Double)
  case string(String)
  case array([StatusValue])
  case object([(String, StatusValue)])

  /// The value at a dotted path (`upstream.relay`), if any.
  public subscript(path: String) -> StatusValue? {
    var value = self
    for key in path.split(separator: ".") {
      guard case .object(let members) = value,
        let member = members.first(where: { $0.0 == key })?.1
      else { return nil }
      value = member
    }
    return value
  }

  public var double: Double? {
    switch self {
    case .int(let value): Double(value)
    case .number(let value): value.isFinite ? value : nil
    default: nil
    }
  }

  /// Compact JSON; strings escape `<`, `>`, `&` and U+2028/9 too, so the text is safe anywhere.
  public var json: String {
    var out = ""
    write(into: &out)
    return out
  }

  private func write(into out: inout String) {
    switch self {
    case .null: out += "null"
    case .bool(let value): out += value ? "true" : "false"
    case .int(let value): out += String(value)
    case .number(let value):
      if !value.isFinite {
        out += "null"
      } else if value == value.rounded() && abs(value) < 1e15 {
        out += String(Int64(value))
      } else {
        out += "\(value)"
      }
    case .string(let value): out += JSONString.quoted(value)
    case .array(let values):
      out += "["
      for (index, value) in values.enumerated() {
        if index > 0 { out += "," }
        value.write(into: &out)
      }
      out += "]"
    case .object(let members):
      out += "{"
      for (index, (key, value)) in members.enumerated() {
        if index > 0 { out += "," }
        out += JSONString.quoted(key)
        out += ":"
        value.write(into: &out)
      }
      out += "}"
    }
  }
}

extension StatusCollector {
  /// The page for a given status tree (what `page()` serves).
  public static func html(_ status: StatusValue) -> String { StatusPage.html(status) }

  /// `GET /status`: the page, every number rendered in (it works without JavaScript).
  public func page() -> SubscribeServer.Page {
    SubscribeServer.Page(
      contentType: "text/html; charset=utf-8", body: Array(StatusPage.html(snapshot()).utf8))
  }

  /// `GET /status.json`: what the page updates itself from.
  public func jsonPage() -> SubscribeServer.Page {
    SubscribeServer.Page(
      contentType: "application/json; charset=utf-8", body: Array(snapshot().json.utf8))
  }
}

/// The status page: one self-contained HTML document (inline CSS, JS and SVG; no external
/// assets). Elements carrying `data-k` (a JSON path) and `data-f` (a format) are rendered by the
/// server and refreshed by the script every 1.5 s from `status.json` with the same formats.
enum StatusPage {
  /// `text` for HTML text and attribute values: `&`, `<`, `>` and both quotes as entities.
  /// (JSON for the page's script is `JSONString.quoted`, which escapes `<`, `>`, `&` and
  /// U+2028/9 too, so it is safe inside `<script>`.)
  static func escape(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.utf8.count)
    for character in text.unicodeScalars {
      switch character {
      case "&": out += "&amp;"
      case "<": out += "&lt;"
      case ">": out += "&gt;"
      case "\"": out += "&quot;"
      case "'": out += "&#39;"
      default: out.unicodeScalars.append(character)
      }
    }
    return out
  }

  // MARK: Formats (mirrored by the script's `fmt` and `cls`).

  static func grouped(_ value: Double) -> String {
    let digits = String(Int64(abs(value).rounded()))
    var out = ""
    for (index, digit) in digits.enumerated() {
      if index > 0 && (digits.count - index) % 3 == 0 { out += "," }
      out.append(digit)
    }
    return (value < 0 && digits != "0" ? "-" : "") + out
  }

  static func duration(_ seconds: Double) -> String {
    let s = max(seconds, 0)
    if s < 10 { return String(format: "%.1f s", s) }
    let whole = Int64(s)
    if s < 60 { return "\(whole) s" }
    func pair(_ big: Int64, _ bigUnit: String, _ small: Int64, _ smallUnit: String) -> String {
      small == 0 ? "\(big) \(bigUnit)" : "\(big) \(bigUnit) \(small) \(smallUnit)"
    }
    if s < 3600 { return pair(whole / 60, "m", whole % 60, "s") }
    if s < 86400 { return pair(whole / 3600, "h", whole % 3600 / 60, "m") }
    return pair(whole / 86400, "d", whole % 86400 / 3600, "h")
  }

  static func bytes(_ value: Double) -> String {
    if value < 1024 { return grouped(value) + " B" }
    var scaled = value
    var unit = -1
    let units = ["KiB", "MiB", "GiB", "TiB"]
    while scaled >= 1024 && unit < units.count - 1 {
      scaled /= 1024
      unit += 1
    }
    return String(format: "%.1f ", scaled) + units[unit]
  }

  static func utc(_ seconds: Double) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime]
    let text = formatter.string(from: Date(timeIntervalSince1970: seconds.rounded(.down)))
    return text.replacingOccurrences(of: "T", with: " ").replacingOccurrences(of: "Z", with: "")
      + " UTC"
  }

  static func format(_ format: String, _ value: StatusValue?) -> String {
    let value = value ?? .null
    if format == "cap" { return value.double.map(bytes) ?? "no cap" }
    if case .null = value { return "—" }
    switch format {
    case "int": return value.double.map(grouped) ?? "—"
    case "rate":
      return value.double.map { abs($0) < 10 ? String(format: "%.1f", $0) : grouped($0) } ?? "—"
    case "bytes": return value.double.map(bytes) ?? "—"
    case "dur": return value.double.map(duration) ?? "—"
    case "ago", "fresh", "seen": return value.double.map { duration($0) + " ago" } ?? "—"
    case "time": return value.double.map(utc) ?? "—"
    case "ratio": return value.double.map { String(format: "×%.2f", $0) } ?? "—"
    case "conn":
      if case .bool(let connected) = value { return connected ? "connected" : "disconnected" }
      return "—"
    default:
      switch value {
      case .string(let text): return text
      case .bool(let flag): return flag ? "yes" : "no"
      default: return value.double.map(grouped) ?? "—"
      }
    }
  }

  /// The class a value gives its element (nil: leave it alone).
  static func cssClass(_ format: String, _ value: StatusValue?) -> String? {
    switch format {
    case "conn":
      if case .bool(true) = value { return "badge ok" }
      return "badge bad"
    case "fresh":
      guard let age = value?.double else { return "bad" }
      return age < 5 ? "ok" : age < 60 ? "warn" : "bad"
    case "seen":
      guard let age = value?.double else { return "bad" }
      return age < 60 ? "" : age < 300 ? "warn" : "bad"
    default: return nil
    }
  }

  // MARK: The chart.

  static let chartWidth = 600.0
  static let chartHeight = 150.0

  /// 1, 2 or 5 × 10ⁿ at or above `value` (at least 1).
  static func niceCeiling(_ value: Double) -> Double {
    guard value > 1 else { return 1 }
    let power = pow(10, (log10(value)).rounded(.down))
    for step in [1.0, 2, 5, 10] where step * power >= value { return step * power }
    return 10 * power
  }

  /// The line's path over `capacity` slots, newest at the right; and the area under it.
  static func chartPaths(_ rates: [Double], capacity: Int) -> (
    line: String, area: String, max: Double
  ) {
    let top = niceCeiling(rates.max() ?? 0)
    guard !rates.isEmpty else { return ("", "", top) }
    let step = chartWidth / Double(max(capacity - 1, 1))
    var line = ""
    var firstX = 0.0
    for (index, rate) in rates.enumerated() {
      let x = (Double(capacity - rates.count + index) * step * 10).rounded() / 10
      let y = ((chartHeight - rate / top * (chartHeight - 10)) * 10).rounded() / 10
      if index == 0 { firstX = x }
      line += (index == 0 ? "M" : "L") + "\(trim(x)),\(trim(y))"
    }
    let area =
      line + "L\(trim(chartWidth)),\(trim(chartHeight))L\(trim(firstX)),\(trim(chartHeight))Z"
    return (line, area, top)
  }

  private static func trim(_ value: Double) -> String {
    value == value.rounded() ? String(Int64(value)) : String(value)
  }

  // MARK: The page.

  static func html(_ status: StatusValue) -> String {
    func field(_ key: String, _ format: String) -> String {
      let value = status[key]
      let cls = cssClass(format, value).map { " class=\"\(escape($0))\"" } ?? ""
      return "<span data-k=\"\(escape(key))\" data-f=\"\(format)\"\(cls)>"
        + escape(StatusPage.format(format, value)) + "</span>"
    }
    func row(_ label: String, _ key: String, _ format: String, note: String = "") -> String {
      "<tr><th>\(label)</th><td>\(field(key, format))\(note)</td></tr>"
    }
    var rates: [Double] = []
    if case .array(let values)? = status["history.rates"] { rates = values.compactMap(\.double) }
    let capacity = Int(status["history.capacity"]?.double ?? Double(StatusCollector.historySeconds))
    let chart = chartPaths(rates, capacity: capacity)
    var collectionRows = ""
    if case .array(let top)? = status["collections.top"] {
      for entry in top {
        let name = entry["name"].map { format("text", $0) } ?? ""
        let seen = entry["last_seen_age_seconds"]
        let seenClass = cssClass("seen", seen) ?? ""
        collectionRows +=
          "<tr><td class=\"name\">\(escape(name))</td>"
          + "<td class=\"num\">\(escape(format("rate", entry["rate"])))</td>"
          + "<td class=\"num\">\(escape(format("rate", entry["rate_10m"])))</td>"
          + "<td class=\"num \(seenClass)\">\(escape(format("seen", seen)))</td>"
          + "<td class=\"num\">\(escape(format("int", entry["total"])))</td></tr>"
      }
    }
    if collectionRows.isEmpty {
      collectionRows = "<tr><td colspan=\"5\" class=\"muted\">no commits seen yet</td></tr>"
    }
    let relay = escape(format("text", status["upstream.relay"]))
    let offline: Bool = {
      if case .bool(true)? = status["upstream.offline"] { return true }
      return false
    }()
    let offlineNote =
      offline ? " <span class=\"muted\">(bundled fixture relay, offline)</span>" : ""
    let generated = escape(format("time", status["now_seconds"]))

    return """
      <!DOCTYPE html>
      <html lang="en">
      <head>
      <meta charset="utf-8">
      <meta name="viewport" content="width=device-width, initial-scale=1">
      <title>Contrail status</title>
      <noscript><meta http-equiv="refresh" content="10"></noscript>
      <style>\(css)</style>
      </head>
      <body>
      <header>
      <h1>Contrail <small>\(field("version", "text"))</small></h1>
      <div class="meta">up \(field("uptime_seconds", "dur")) · <span id="live" class="muted">rendered \
      \(generated); without JavaScript this page reloads every 10 s</span></div>
      </header>
      <main>
      <section class="card">
      <h2>Upstream</h2>
      <p class="relay"><code>\(relay)</code>\(offlineNote)</p>
      <table>
      \(row("State", "upstream.connected", "conn"))
      \(row("Last frame", "upstream.last_frame_age_seconds", "fresh"))
      \(row("Reconnects", "upstream.reconnects", "int"))
      \(row("Relay seq", "upstream.relay_seq", "int"))
      \(row("Relay bytes/s", "upstream.bytes_per_second", "bytes"))
      </table>
      </section>
      <section class="card">
      <h2>Ingest</h2>
      <p class="big">\(field("ingest.rates.total", "rate")) <span class="unit">events/s</span></p>
      <table>
      <tr><th></th><td class="num muted">events/s</td><td class="num muted">total</td></tr>
      <tr><th>commit</th><td class="num">\(field("ingest.rates.commit", "rate"))</td><td class="num">\(field("ingest.totals.commit", "int"))</td></tr>
      <tr><th>identity</th><td class="num">\(field("ingest.rates.identity", "rate"))</td><td class="num">\(field("ingest.totals.identity", "int"))</td></tr>
      <tr><th>account</th><td class="num">\(field("ingest.rates.account", "rate"))</td><td class="num">\(field("ingest.totals.account", "int"))</td></tr>
      <tr><th>all</th><td class="num">\(field("ingest.rates.total", "rate"))</td><td class="num" id="events-total">\(field("ingest.totals.total", "int"))</td></tr>
      </table>
      <p class="note">Rates: the last 5 s of the live window. Totals: since the server started.</p>
      </section>
      <section class="card">
      <h2>Subscribers</h2>
      <p class="big" id="subscribers">\(field("subscribers.total", "int")) <span class="unit">connected</span></p>
      <table>
      \(row("JSON (uncompressed)", "subscribers.none", "int"))
      \(row("zstd", "subscribers.zstd", "int"))
      \(row("Jetstream v1 wire", "subscribers.v1", "int"))
      \(row("Jetstream v2 wire", "subscribers.v2", "int"))
      \(row("Replaying from disk", "subscribers.replaying", "int"))
      \(row("Events read from disk/s", "subscribers.disk_reads_per_second", "rate"))
      \(row("Events read from memory/s", "subscribers.memory_reads_per_second", "rate"))
      \(row("Cursor subscriptions", "subscribers.cursor_subscriptions_total", "int"))
      </table>
      <p class="note">Replaying: subscribers behind the in-memory window, reading the log.</p>
      </section>
      <section class="card">
      <h2>Event log</h2>
      <table>
      \(row("Size", "log.bytes", "bytes"))
      \(row("Events", "log.events", "int"))
      \(row("Segments", "log.segments", "int"))
      \(row("Oldest event", "log.oldest_time_seconds", "time"))
      \(row("Oldest age", "log.oldest_age_seconds", "dur"))
      \(row("Retention", "log.retention_seconds", "dur"))
      \(row("Disk cap", "log.max_disk_bytes", "cap"))
      </table>
      </section>
      <section class="card wide">
      <h2>Events/s, last 10 minutes <span class="muted" id="chart-max-label">(scale: 0–<span id="chart-max">\(grouped(chart.max))</span>)</span></h2>
      <svg id="chart" viewBox="0 0 \(Int(chartWidth)) \(Int(chartHeight))" preserveAspectRatio="none" role="img" aria-label="events per second over the last 10 minutes" data-points="\(rates.count)">
      <line x1="0" y1="\(Int(chartHeight / 2 + 5))" x2="\(Int(chartWidth))" y2="\(Int(chartHeight / 2 + 5))" class="grid"/>
      <line x1="0" y1="10" x2="\(Int(chartWidth))" y2="10" class="grid"/>
      <path id="chart-area" class="area" d="\(chart.area)"/>
      <path id="chart-line" class="line" d="\(chart.line)" vector-effect="non-scaling-stroke"/>
      </svg>
      <div class="axis"><span>−10 min</span><span>−5 min</span><span>now</span></div>
      </section>
      <section class="card span3">
      <h2>Top collections <span class="muted">(\(field("collections.tracked", "int")) tracked, at most \
      \(field("collections.cap", "int")))</span></h2>
      <table class="collections">
      <thead><tr><th>collection</th><th class="num">events/s (1 min)</th><th class="num">events/s (10 min)</th><th class="num">last seen</th><th class="num">seen since start</th></tr></thead>
      <tbody id="collections">\(collectionRows)</tbody>
      </table>
      <p class="note">Ranked by the 10-minute average, so a collection that stops flowing stays \
      listed while its last-seen age grows (amber after 1 min, red after 5).</p>
      </section>
      <section class="card">
      <h2>Bytes sent</h2>
      <table>
      \(row("Total", "bytes.sent_total", "bytes"))
      \(row("Per second", "bytes.sent_per_second", "bytes"))
      \(row("To JSON subscribers", "bytes.sent_none", "bytes"))
      \(row("To zstd subscribers", "bytes.sent_zstd", "bytes"))
      \(row("Compression ratio", "bytes.compression_ratio", "ratio"))
      \(row("Saved by zstd", "bytes.saved", "bytes"))
      </table>
      <p class="note">Saved is an estimate: bytes sent to zstd subscribers × (JSON size ÷ zstd \
      size of the events ingested since start − 1). Sent bytes include websocket framing.</p>
      </section>
      </main>
      <footer class="muted">Contrail \(field("version", "text")) · data: <a href="status.json">status.json</a> · \
      <a href="metrics">metrics</a></footer>
      <script>\(script)</script>
      </body>
      </html>

      """
  }

  static let css = """
    :root{--fg:#1d2330;--muted:#6b7385;--line:#e3e6ec;--bg:#f5f6f8;--card:#fff;--ok:#17803d;\
    --warn:#b26b00;--bad:#c4271f;--accent:#2f6fdf}
    *{box-sizing:border-box}
    body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;\
    color:var(--fg);background:var(--bg)}
    header{display:flex;align-items:baseline;gap:16px;padding:14px 20px;background:var(--card);\
    border-bottom:1px solid var(--line)}
    h1{font-size:20px;margin:0}h1 small{font-weight:400;color:var(--muted);font-size:14px}
    .meta{color:var(--muted)}
    main{display:grid;grid-template-columns:repeat(4,minmax(0,1fr));gap:14px;padding:14px 20px}
    .card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 16px;\
    min-width:0}
    .wide{grid-column:1/-1}.span3{grid-column:span 3}
    h2{font-size:13px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);\
    margin:0 0 8px}
    h2 .muted{text-transform:none;letter-spacing:0}
    table{border-collapse:collapse;width:100%}
    th,td{text-align:left;padding:3px 6px 3px 0;border-bottom:1px solid var(--line);\
    vertical-align:top}
    th{font-weight:500;color:var(--muted)}
    .num{text-align:right;font-variant-numeric:tabular-nums}
    td{font-variant-numeric:tabular-nums}
    .collections td.name{font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-all}
    .big{font-size:28px;font-weight:600;margin:2px 0 8px}.unit{font-size:14px;font-weight:400;\
    color:var(--muted)}
    .relay code{font-size:13px;word-break:break-all}
    .muted{color:var(--muted)}.note{color:var(--muted);font-size:12px;margin:8px 0 0}
    .ok{color:var(--ok)}.warn{color:var(--warn)}.bad{color:var(--bad)}
    .badge{display:inline-block;padding:0 8px;border-radius:10px;color:#fff;font-weight:600}
    .badge.ok{background:var(--ok);color:#fff}.badge.bad{background:var(--bad);color:#fff}
    svg#chart{display:block;width:100%;height:160px;background:#fafbfd;border:1px solid var(--line)}
    .area{fill:rgba(47,111,223,.18);stroke:none}.line{fill:none;stroke:var(--accent);\
    stroke-width:1.5}
    .grid{stroke:var(--line);stroke-width:1;vector-effect:non-scaling-stroke}
    .axis{display:flex;justify-content:space-between;color:var(--muted);font-size:12px}
    footer{padding:0 20px 16px;font-size:12px}
    @media (max-width:1100px){main{grid-template-columns:repeat(2,minmax(0,1fr))}\
    .span3{grid-column:1/-1}}
    @media (max-width:700px){main{grid-template-columns:1fr}}
    """

  static let script = """
    (function(){"use strict";
    function grp(n){var s=String(Math.round(Math.abs(n)));s=s.replace(/\\B(?=(\\d{3})+(?!\\d))/g,",");\
    return (n<0&&s!=="0"?"-":"")+s;}
    function dur(s){s=Math.max(s,0);if(s<10)return s.toFixed(1)+" s";var w=Math.floor(s);\
    if(s<60)return w+" s";if(s<3600)return pr(Math.floor(w/60),"m",w%60,"s");\
    if(s<86400)return pr(Math.floor(w/3600),"h",Math.floor(w%3600/60),"m");\
    return pr(Math.floor(w/86400),"d",Math.floor(w%86400/3600),"h");}
    function pr(a,u,b,v){return b===0?a+" "+u:a+" "+u+" "+b+" "+v;}
    function bytes(v){if(v<1024)return grp(v)+" B";var u=["KiB","MiB","GiB","TiB"],i=-1;\
    while(v>=1024&&i<u.length-1){v/=1024;i++;}return v.toFixed(1)+" "+u[i];}
    function fmt(f,v){if(f==="cap")return typeof v==="number"?bytes(v):"no cap";\
    if(v===null||v===undefined)return "\\u2014";
    switch(f){case "int":return grp(v);case "rate":return Math.abs(v)<10?v.toFixed(1):grp(v);\
    case "bytes":return bytes(v);case "dur":return dur(v);\
    case "ago":case "fresh":case "seen":return dur(v)+" ago";\
    case "time":return new Date(Math.floor(v)*1000).toISOString().slice(0,19).replace("T"," ")+" UTC";\
    case "ratio":return "\\u00d7"+v.toFixed(2);case "conn":return v?"connected":"disconnected";\
    default:return typeof v==="boolean"?(v?"yes":"no"):typeof v==="number"?grp(v):String(v);}}
    function cls(f,v){if(f==="conn")return v===true?"badge ok":"badge bad";\
    if(f==="fresh")return typeof v!=="number"?"bad":v<5?"ok":v<60?"warn":"bad";\
    if(f==="seen")return typeof v!=="number"?"bad":v<60?"":v<300?"warn":"bad";return null;}
    function get(o,k){var p=k.split(".");for(var i=0;i<p.length;i++){if(o===null||o===undefined)\
    return null;o=o[p[i]];}return o;}
    function nice(v){if(!(v>1))return 1;var p=Math.pow(10,Math.floor(Math.log10(v)));\
    var s=[1,2,5,10];for(var i=0;i<s.length;i++){if(s[i]*p>=v)return s[i]*p;}return 10*p;}
    var W=\(Int(chartWidth)),H=\(Int(chartHeight));
    function r1(x){return Math.round(x*10)/10;}
    function chart(rates,cap){var top=nice(Math.max.apply(null,rates.concat([0])));\
    var line="",fx=0,step=W/Math.max(cap-1,1);for(var i=0;i<rates.length;i++){\
    var x=r1((cap-rates.length+i)*step),y=r1(H-rates[i]/top*(H-10));if(i===0)fx=x;\
    line+=(i===0?"M":"L")+x+","+y;}
    document.getElementById("chart-line").setAttribute("d",line);\
    document.getElementById("chart-area").setAttribute("d",rates.length?line+"L"+W+","+H+"L"+fx+","+H+"Z":"");\
    document.getElementById("chart").setAttribute("data-points",String(rates.length));\
    document.getElementById("chart-max").textContent=grp(top);}
    function cell(tr,text,c){var td=document.createElement("td");td.textContent=text;\
    if(c)td.className=c;tr.appendChild(td);}
    function table(top){var body=document.getElementById("collections");\
    while(body.firstChild)body.removeChild(body.firstChild);\
    if(!top.length){var tr=document.createElement("tr");var td=document.createElement("td");\
    td.colSpan=5;td.className="muted";td.textContent="no commits seen yet";tr.appendChild(td);\
    body.appendChild(tr);return;}
    for(var i=0;i<top.length;i++){var e=top[i],tr=document.createElement("tr");\
    cell(tr,String(e.name),"name");cell(tr,fmt("rate",e.rate),"num");\
    cell(tr,fmt("rate",e.rate_10m),"num");\
    cell(tr,fmt("seen",e.last_seen_age_seconds),"num "+cls("seen",e.last_seen_age_seconds));\
    cell(tr,fmt("int",e.total),"num");body.appendChild(tr);}}
    var live=document.getElementById("live");
    function apply(d){var els=document.querySelectorAll("[data-k]");\
    for(var i=0;i<els.length;i++){var e=els[i],f=e.getAttribute("data-f"),\
    v=get(d,e.getAttribute("data-k"));e.textContent=fmt(f,v);var c=cls(f,v);\
    if(c!==null)e.className=c;}
    chart(d.history.rates,d.history.capacity);table(d.collections.top);\
    document.body.setAttribute("data-live","1");\
    live.textContent="live \\u00b7 updated "+fmt("time",d.now_seconds).slice(11);live.className="muted";}
    function tick(){fetch("status.json",{cache:"no-store"}).then(function(r){\
    if(!r.ok)throw new Error("HTTP "+r.status);return r.json();}).then(apply,function(e){\
    live.textContent="update failed ("+e.message+"); retrying";live.className="bad";});}
    tick();setInterval(tick,1500);})();
    """
}
