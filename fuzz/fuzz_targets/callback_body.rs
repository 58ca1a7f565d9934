//! Feeds arbitrary bytes to `Callback::parse`; whatever it accepts must keep the body as
//! received and carry usable required fields.
#![no_main]

use callhook::domain::callback::{Callback, CallbackError};
use callhook::domain::time::now;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let received_at = now();
    match Callback::parse(body, None, received_at) {
        Ok(cb) => {
            assert_eq!(
                cb.payload,
                String::from_utf8_lossy(body),
                "payload is the body"
            );
            assert_eq!(
                cb.payload.as_bytes(),
                body,
                "an accepted body is UTF-8 and kept exactly"
            );
            assert!(!cb.status.is_empty(), "empty status accepted");
            assert!(!cb.status.contains('\0'), "NUL in status {:?}", cb.status);
            assert!(
                !cb.conversation_uuid.is_empty(),
                "empty conversation_uuid accepted"
            );
            assert_eq!(cb.call_id, None);
            assert_eq!(cb.received_at, received_at);
        }
        Err(CallbackError::Invalid(errors)) => {
            assert!(!errors.is_empty(), "refused without a reason")
        }
        Err(CallbackError::NotAnObject) => {}
    }
});
