//! The host side of the ABI: the callbacks a plugin calls to log, send, request, publish and subscribe.

#![allow(unsafe_code)]

use std::ffi::c_void;
use std::sync::Arc;

use kubernel_abi::{level, Bytes, HostVtable, OutBuf, Status};

use crate::bus::{Envelope, Slot};

/// The vtable handed to every instance of `slot`; `ctx` points at the slot, which
/// the bus keeps alive until the process exits.
pub(crate) fn vtable_for(slot: &Arc<Slot>) -> HostVtable {
    HostVtable {
        size: std::mem::size_of::<HostVtable>() as u32,
        ctx: Arc::as_ptr(slot) as *const c_void,
        log: host_log,
        send: host_send,
        request: host_request,
        publish: host_publish,
        subscribe: host_subscribe,
        send_traced: Some(host_send_traced),
        request_traced: Some(host_request_traced),
        publish_traced: Some(host_publish_traced),
    }
}

fn slot<'a>(ctx: *const c_void) -> &'a Slot {
    // SAFETY: `ctx` is `Arc::as_ptr` of a slot (see `vtable_for`); slots are never
    // removed from the bus, so the pointer stays valid for the process lifetime.
    unsafe { &*(ctx as *const Slot) }
}

macro_rules! plugin_event {
    ($level:expr, $plugin:expr, $target:expr, $message:expr, $fields:expr) => {
        tracing::event!(target: "plugin", $level, plugin = %$plugin, module = %$target, fields = %$fields, "{}", $message)
    };
}

extern "C" fn host_log(
    ctx: *const c_void,
    lvl: u8,
    target: Bytes<'_>,
    message: Bytes<'_>,
    fields: Bytes<'_>,
) {
    let slot = slot(ctx);
    let (t, m, f) = (
        target.to_string_lossy(),
        message.to_string_lossy(),
        fields.to_string_lossy(),
    );
    match lvl {
        level::ERROR => plugin_event!(tracing::Level::ERROR, slot.name, t, m, f),
        level::WARN => plugin_event!(tracing::Level::WARN, slot.name, t, m, f),
        level::INFO => plugin_event!(tracing::Level::INFO, slot.name, t, m, f),
        level::DEBUG => plugin_event!(tracing::Level::DEBUG, slot.name, t, m, f),
        _ => plugin_event!(tracing::Level::TRACE, slot.name, t, m, f),
    }
}

fn utf8<'a>(b: &Bytes<'a>) -> Option<&'a str> {
    std::str::from_utf8(b.as_slice()).ok()
}

extern "C" fn host_send(
    ctx: *const c_void,
    target: Bytes<'_>,
    kind: Bytes<'_>,
    payload: Bytes<'_>,
    err: &mut OutBuf<'_>,
) -> Status {
    host_send_traced(ctx, target, kind, payload, Bytes::new(&[]), err)
}

extern "C" fn host_send_traced(
    ctx: *const c_void,
    target: Bytes<'_>,
    kind: Bytes<'_>,
    payload: Bytes<'_>,
    trace: Bytes<'_>,
    err: &mut OutBuf<'_>,
) -> Status {
    let from = slot(ctx);
    let (Some(target), Some(kind)) = (utf8(&target), utf8(&kind)) else {
        err.write(b"target or kind is not UTF-8");
        return Status::BAD_MESSAGE;
    };
    let envelope = Envelope {
        from: &from.name,
        kind,
        payload: payload.as_slice(),
        trace: trace.as_slice(),
    };
    match from.bus.send(target, envelope) {
        Ok(()) => Status::OK,
        Err(e) => {
            err.write(e.message.as_bytes());
            e.status
        }
    }
}

extern "C" fn host_request(
    ctx: *const c_void,
    target: Bytes<'_>,
    kind: Bytes<'_>,
    payload: Bytes<'_>,
    out: &mut OutBuf<'_>,
) -> Status {
    host_request_traced(ctx, target, kind, payload, Bytes::new(&[]), out)
}

extern "C" fn host_request_traced(
    ctx: *const c_void,
    target: Bytes<'_>,
    kind: Bytes<'_>,
    payload: Bytes<'_>,
    trace: Bytes<'_>,
    out: &mut OutBuf<'_>,
) -> Status {
    let from = slot(ctx);
    let (Some(target), Some(kind)) = (utf8(&target), utf8(&kind)) else {
        out.write(b"target or kind is not UTF-8");
        return Status::BAD_MESSAGE;
    };
    match from.bus.resolve(target) {
        Ok(to) => to.deliver(
            Envelope {
                from: &from.name,
                kind,
                payload: payload.as_slice(),
                trace: trace.as_slice(),
            },
            out,
        ),
        Err(e) => {
            out.write(e.message.as_bytes());
            e.status
        }
    }
}

extern "C" fn host_publish(ctx: *const c_void, kind: Bytes<'_>, payload: Bytes<'_>) -> Status {
    host_publish_traced(ctx, kind, payload, Bytes::new(&[]))
}

extern "C" fn host_publish_traced(
    ctx: *const c_void,
    kind: Bytes<'_>,
    payload: Bytes<'_>,
    trace: Bytes<'_>,
) -> Status {
    let from = slot(ctx);
    let Some(kind) = utf8(&kind) else {
        return Status::BAD_MESSAGE;
    };
    from.bus.publish(Envelope {
        from: &from.name,
        kind,
        payload: payload.as_slice(),
        trace: trace.as_slice(),
    });
    Status::OK
}

extern "C" fn host_subscribe(ctx: *const c_void, kind: Bytes<'_>) -> Status {
    let from = slot(ctx);
    let Some(kind) = utf8(&kind) else {
        return Status::BAD_MESSAGE;
    };
    match from.bus.slot_by_id(from.id) {
        Some(me) => {
            from.bus.subscribe(&me, kind);
            Status::OK
        }
        None => Status::UNAVAILABLE,
    }
}
