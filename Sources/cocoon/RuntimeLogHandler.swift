import Foundation
import Logging

/// Log records to stderr or to --log; with --log-format json each line is
/// {"level":"error","msg":"...","time":"..."}, the format containerd's runc shim parses.
struct RuntimeLogHandler: LogHandler {
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    let format: LogFormat
    let file: FileHandle

    static func make(path: String?, format: LogFormat, level: Logger.Level) -> RuntimeLogHandler {
        var handle = FileHandle.standardError
        if let path {
            if !FileManager.default.fileExists(atPath: path) { FileManager.default.createFile(atPath: path, contents: nil) }
            if let h = FileHandle(forWritingAtPath: path) {
                h.seekToEndOfFile()
                handle = h
            }
        }
        return RuntimeLogHandler(logLevel: level, format: format, file: handle)
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let time = ISO8601DateFormatter().string(from: Date())
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        let line: String
        switch format {
        case .json:
            var object: [String: String] = ["level": Self.levelName(event.level), "msg": "\(event.message)", "time": time]
            for (k, v) in merged where object[k] == nil { object[k] = "\(v)" }
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
            line = String(decoding: data, as: UTF8.self)
        case .text:
            let meta = merged.sorted { $0.key < $1.key }.map { " \($0.key)=\($0.value)" }.joined()
            line = "\(time) \(Self.levelName(event.level)) \(event.message)\(meta)"
        }
        file.write(Data((line + "\n").utf8))
    }

    /// logrus level names, which runc's readers expect.
    static func levelName(_ level: Logger.Level) -> String {
        switch level {
        case .trace: "trace"
        case .debug: "debug"
        case .info, .notice: "info"
        case .warning: "warning"
        case .error: "error"
        case .critical: "fatal"
        }
    }
}
