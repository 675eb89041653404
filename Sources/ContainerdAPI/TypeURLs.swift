import Foundation
import SwiftProtobuf

/// containerd names the type inside a `google.protobuf.Any` its own way (the typeurl package): a
/// protobuf message by its full name with no "type.googleapis.com/" prefix, and an OCI structure
/// (sent as JSON) by a fixed URL.
public enum TypeURL {
    public static let ociProcess = "types.containerd.io/opencontainers/runtime-spec/1/Process"
    public static let ociLinuxResources = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
    public static let cgroupsV2Metrics = Io_Containerd_Cgroups_V2_Metrics.protoMessageName

    /// Packs a message the way containerd's typeurl.MarshalAny does.
    public static func pack(_ message: some SwiftProtobuf.Message) throws -> Google_Protobuf_Any {
        var any = Google_Protobuf_Any()
        any.typeURL = type(of: message).protoMessageName
        any.value = try message.serializedData()
        return any
    }

    /// The name an Any carries, whether or not the sender used a "prefix/" form.
    public static func name(of any: Google_Protobuf_Any) -> String {
        any.typeURL.split(separator: "/").last.map(String.init) ?? any.typeURL
    }
}

/// The event topics containerd's runtime v2 publishes (runtime/events.go), in the form the
/// Events/Forward envelope carries.
public enum EventTopic {
    public static let taskCreate = "/tasks/create"
    public static let taskStart = "/tasks/start"
    public static let taskOOM = "/tasks/oom"
    public static let taskExit = "/tasks/exit"
    public static let taskDelete = "/tasks/delete"
    public static let taskExecAdded = "/tasks/exec-added"
    public static let taskExecStarted = "/tasks/exec-started"
    public static let taskPaused = "/tasks/paused"
    public static let taskResumed = "/tasks/resumed"
}
