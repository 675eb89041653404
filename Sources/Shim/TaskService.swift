import ContainerdAPI
import SwiftProtobuf
import TTRPC

extension ShimService {
    static let taskServiceName = "containerd.task.v2.Task"

    /// `containerd.task.v2.Task` over ttrpc. Errors carry their gRPC code, which containerd maps to
    /// its errdefs; unknown methods answer Unimplemented (the ttrpc server does that).
    public func taskService() -> TTRPCService {
        var s = TTRPCService(Self.taskServiceName)
        typealias Empty = Google_Protobuf_Empty
        s.unary("Create") { (_, r: Containerd_Task_V2_CreateTaskRequest) in try self.create(r) }
        s.unary("Start") { (_, r: Containerd_Task_V2_StartRequest) in try self.start(r) }
        s.unary("Delete") { (_, r: Containerd_Task_V2_DeleteRequest) in try self.delete(r) }
        s.unary("State") { (_, r: Containerd_Task_V2_StateRequest) in try self.state(r) }
        s.unary("Wait") { (context, r: Containerd_Task_V2_WaitRequest) in try self.wait(r, until: context.deadline) }
        s.unary("Kill") { (_, r: Containerd_Task_V2_KillRequest) -> Empty in
            try self.kill(r)
            return Empty()
        }
        s.unary("Exec") { (_, r: Containerd_Task_V2_ExecProcessRequest) -> Empty in
            try self.exec(r)
            return Empty()
        }
        s.unary("ResizePty") { (_, r: Containerd_Task_V2_ResizePtyRequest) -> Empty in
            try self.resizePty(r)
            return Empty()
        }
        s.unary("CloseIO") { (_, r: Containerd_Task_V2_CloseIORequest) -> Empty in
            try self.closeIO(r)
            return Empty()
        }
        s.unary("Pids") { (_, r: Containerd_Task_V2_PidsRequest) in try self.pids(r) }
        s.unary("Pause") { (_, r: Containerd_Task_V2_PauseRequest) -> Empty in
            try self.pause(r.id, true)
            return Empty()
        }
        s.unary("Resume") { (_, r: Containerd_Task_V2_ResumeRequest) -> Empty in
            try self.pause(r.id, false)
            return Empty()
        }
        s.unary("Stats") { (_, r: Containerd_Task_V2_StatsRequest) in try self.stats(r) }
        s.unary("Update") { (_, r: Containerd_Task_V2_UpdateTaskRequest) -> Empty in
            try self.update(r)
            return Empty()
        }
        s.unary("Connect") { (_, r: Containerd_Task_V2_ConnectRequest) in self.connect(r) }
        s.unary("Shutdown") { (context, r: Containerd_Task_V2_ShutdownRequest) -> Empty in
            self.shutdown(r, context: context)
            return Empty()
        }
        s.unary("Checkpoint") { (_, _: Containerd_Task_V2_CheckpointTaskRequest) -> Empty in
            throw ShimError(.unimplemented, "checkpoint is not supported by cocoon: the container runs in a VM")
        }
        return s
    }
}
