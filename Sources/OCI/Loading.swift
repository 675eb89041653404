#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SystemCalls

extension Spec {
    /// config.json is small; a huge one is a mistake or an attack.
    public static let maxConfigBytes = 8 << 20

    /// Reads and validates `<bundle>/config.json`.
    public static func load(bundle: String) throws(OCIError) -> Spec {
        let file = bundle + "/config.json"
        guard Files.exists(file) else {
            throw OCIError(.notFound, file: file, path: "", "not found: the bundle must contain config.json (create one with `cocoon spec`)")
        }
        let text: String
        do {
            text = try Files.readString(file, limit: maxConfigBytes + 1)
        } catch {
            throw OCIError(error.code, file: file, path: "", "cannot read: \(error.message)")
        }
        guard text.utf8.count <= maxConfigBytes else {
            throw OCIError(.resourceExhausted, file: file, path: "", "larger than \(maxConfigBytes) bytes")
        }
        let spec = try decode(Array(text.utf8), file: file)
        try spec.validate(file: file)
        return spec
    }

    /// Decodes JSON, turning decoder errors into the JSON path of the offending field.
    public static func decode(_ bytes: [UInt8], file: String) throws(OCIError) -> Spec {
        do {
            return try JSONDecoder().decode(Spec.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw OCIError(file: file, decodingError: error)
        } catch {
            throw OCIError(file: file, path: "", "not valid JSON: \(error)")
        }
    }

    public func encoded(pretty: Bool = true) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys] : [.sortedKeys]
        return Array((try? encoder.encode(self)) ?? Data())
    }
}

extension OCIError {
    init(file: String, decodingError: DecodingError) {
        func render(_ path: [any CodingKey]) -> String {
            var out = ""
            for key in path {
                if let i = key.intValue, key.stringValue.hasPrefix("Index") || key.stringValue == "\(i)" {
                    out += "[\(i)]"
                } else {
                    out += out.isEmpty ? key.stringValue : "." + key.stringValue
                }
            }
            return out
        }
        switch decodingError {
        case .typeMismatch(let type, let context):
            self.init(file: file, path: render(context.codingPath), "expected \(Self.describe(type))")
        case .valueNotFound(let type, let context):
            self.init(file: file, path: render(context.codingPath), "expected \(Self.describe(type)), found null")
        case .keyNotFound(let key, let context):
            self.init(file: file, path: render(context.codingPath + [key]), "required field is missing")
        case .dataCorrupted(let context):
            let where_ = render(context.codingPath)
            self.init(file: file, path: where_, where_.isEmpty ? "not valid JSON" : "invalid value: \(context.debugDescription)")
        @unknown default:
            self.init(file: file, path: "", "cannot decode: \(decodingError)")
        }
    }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        case is UInt32.Type, is UInt64.Type, is UInt16.Type: "a non-negative integer"
        case is Int.Type, is Int64.Type: "an integer"
        case is [String].Type: "an array of strings"
        default: "\(type)".hasPrefix("Array") ? "an array" : (("\(type)".hasPrefix("Dictionary")) ? "an object" : "a \(type)")
        }
    }
}
