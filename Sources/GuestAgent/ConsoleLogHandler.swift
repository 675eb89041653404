import Logging
import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

/// Writes one line per record to stderr, which for PID 1 is the VM's console, so the host
/// sees agent messages next to the kernel's in the console log.
public struct ConsoleLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    private let label: String

    public init(label: String, level: Logger.Level) {
        self.label = label
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = "\(label)[\(event.level)]: \(event.message)"
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        for (k, v) in merged.sorted(by: { $0.key < $1.key }) { line += " \(k)=\(v)" }
        line += "\n"
        writeToStandardError(line)
    }

    /// `cocoon.log=LEVEL` from the kernel command line; unknown values keep the default.
    public static func level(fromKernelCommandLine cmdline: String, default fallback: Logger.Level = .info) -> Logger.Level {
        for word in cmdline.split(whereSeparator: { $0 == " " || $0 == "\n" }) where word.hasPrefix("cocoon.log=") {
            return Logger.Level(rawValue: String(word.dropFirst("cocoon.log=".count))) ?? fallback
        }
        return fallback
    }
}
