//! The frame around every Kubernetes protobuf body: the 4-byte prefix `k8s\0`, then a
//! `runtime.Unknown` message {1 typeMeta {1 apiVersion, 2 kind}, 2 raw, 3 contentEncoding,
//! 4 contentType} whose `raw` is the object's own message.

use crate::error::{DecodeError, Problem};
use crate::object::{expect_len, string};
use crate::wire::{Raw, Reader};
use crate::{MAGIC, MEDIA_TYPE};

pub(crate) struct Envelope<'a> {
    pub api_version: String,
    pub kind: String,
    pub raw: &'a [u8],
}

pub(crate) fn open(body: &[u8]) -> Result<Envelope<'_>, DecodeError> {
    let unknown = body.strip_prefix(MAGIC).ok_or(DecodeError::MissingMagic)?;
    let mut type_meta: &[u8] = &[];
    let mut raw: &[u8] = &[];
    let mut content_encoding = String::new();
    let mut content_type = String::new();
    for field in fields(unknown) {
        let (number, value) = field?;
        let bytes = |v| expect_len(v).map_err(|problem| envelope(Some(number), problem));
        let text = |v| string(v).map_err(|problem| envelope(Some(number), problem));
        match number {
            1 => type_meta = bytes(value)?,
            2 => raw = bytes(value)?,
            3 => content_encoding = text(value)?,
            4 => content_type = text(value)?,
            _ => return Err(envelope(Some(number), Problem::UnknownField)),
        }
    }
    if !content_encoding.is_empty() {
        return Err(DecodeError::UnsupportedEncoding {
            what: "contentEncoding",
            value: content_encoding,
        });
    }
    // client-go leaves contentType empty; anything else would mean `raw` is not protobuf.
    if !content_type.is_empty() && content_type != MEDIA_TYPE {
        return Err(DecodeError::UnsupportedEncoding {
            what: "contentType",
            value: content_type,
        });
    }
    let mut api_version = String::new();
    let mut kind = String::new();
    for field in fields(type_meta) {
        let (number, value) = field?;
        // Errors inside typeMeta are reported against the envelope's field 1.
        let text = |v| string(v).map_err(|problem| envelope(Some(1), problem));
        match number {
            1 => api_version = text(value)?,
            2 => kind = text(value)?,
            _ => return Err(envelope(Some(1), Problem::UnknownField)),
        }
    }
    if api_version.is_empty() {
        return Err(DecodeError::MissingTypeMeta {
            missing: "apiVersion",
        });
    }
    if kind.is_empty() {
        return Err(DecodeError::MissingTypeMeta { missing: "kind" });
    }
    Ok(Envelope {
        api_version,
        kind,
        raw,
    })
}

fn fields(bytes: &[u8]) -> impl Iterator<Item = Result<(u32, Raw<'_>), DecodeError>> {
    let mut reader = Reader::new(bytes);
    std::iter::from_fn(move || reader.next_field())
        .map(|next| next.map_err(|(field, problem)| envelope(field, problem)))
}

fn envelope(field: Option<u32>, problem: Problem) -> DecodeError {
    DecodeError::Envelope { field, problem }
}
