//! The protobuf wire format, read without a schema: keys, varints, fixed-width values and
//! length-delimited payloads. Every read is bounds-checked; the caller decides what a field means.

use crate::error::Problem;

/// A wire type, as the low three bits of a key encode it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WireType {
    Varint,
    Fixed64,
    Len,
    Fixed32,
}

impl WireType {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            WireType::Varint => "varint",
            WireType::Fixed64 => "64-bit",
            WireType::Len => "length-delimited",
            WireType::Fixed32 => "32-bit",
        }
    }
}

/// One field's value as it sits on the wire.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Raw<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    /// No Kubernetes field is 32-bit fixed; only its wire type matters (for the error).
    Fixed32,
}

impl Raw<'_> {
    pub(crate) fn wire_type(&self) -> WireType {
        match self {
            Raw::Varint(_) => WireType::Varint,
            Raw::Fixed64(_) => WireType::Fixed64,
            Raw::Len(_) => WireType::Len,
            Raw::Fixed32 => WireType::Fixed32,
        }
    }
}

/// A field's number and value, or what was wrong (with the number, if the key was read).
pub(crate) type FieldResult<'a> = Result<(u32, Raw<'a>), (Option<u32>, Problem)>;

/// Reads the fields of one message in order.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// The largest field number protobuf allows (2^29 - 1).
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The next field's number and value, or `None` at the end of the message. Errors carry
    /// the field number when the key was read.
    pub(crate) fn next_field(&mut self) -> Option<FieldResult<'a>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        Some(self.read_field())
    }

    fn read_field(&mut self) -> FieldResult<'a> {
        let key = self.varint().map_err(|p| (None, p))?;
        let number = key >> 3;
        if number == 0 || number > MAX_FIELD_NUMBER {
            return Err((None, Problem::InvalidFieldNumber(number)));
        }
        // Checked above: fits in u32.
        let number = number as u32;
        let at = |p| (Some(number), p);
        let raw = match key & 7 {
            0 => Raw::Varint(self.varint().map_err(at)?),
            1 => Raw::Fixed64(u64::from_le_bytes(self.array::<8>().map_err(at)?)),
            2 => {
                let len = self.varint().map_err(at)?;
                Raw::Len(self.take(len).map_err(at)?)
            }
            5 => {
                self.array::<4>().map_err(at)?;
                Raw::Fixed32
            }
            // 3 and 4 are proto2 groups, which no Kubernetes message uses; 6 and 7 do not exist.
            other => return Err(at(Problem::UnsupportedWireType(other as u8))),
        };
        Ok((number, raw))
    }

    /// A base-128 varint of at most 10 bytes, the most a 64-bit value takes.
    pub(crate) fn varint(&mut self) -> Result<u64, Problem> {
        let mut value = 0u64;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos).ok_or(Problem::Truncated)?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Problem::VarintTooLong)
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], Problem> {
        let remaining = self.buf.len() - self.pos;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= remaining)
            .ok_or(Problem::Truncated)?;
        let slice = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Problem> {
        let slice = self.take(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// A fixed 64-bit value inside a packed payload.
    pub(crate) fn fixed64(&mut self) -> Result<u64, Problem> {
        Ok(u64::from_le_bytes(self.array::<8>()?))
    }
}
