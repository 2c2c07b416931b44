//! The protobuf wire format: keys, varints, fixed-width values and length-delimited payloads.
//!
//! Everything here works on borrowed slices and reports malformed input as a [`WireError`];
//! nothing indexes past the end of the data.

/// A malformed wire encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The data ends inside a key or value.
    #[error("the data ends in the middle of a field")]
    Truncated,
    /// A varint runs past its 10-byte maximum.
    #[error("a varint is longer than 10 bytes")]
    VarintTooLong,
    /// Groups (3, 4) and the unassigned wire types 6 and 7; Kubernetes never uses them.
    #[error("unsupported wire type {0}")]
    WireType(u8),
    /// Field number 0, or one beyond the protobuf maximum.
    #[error("invalid field number {0}")]
    FieldNumber(u64),
}

/// One field value as it appears on the wire, before the schema gives it a meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireValue<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2: strings, bytes, messages and packed repeated scalars.
    Len(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
}

impl WireValue<'_> {
    /// The wire type's name, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            WireValue::Varint(_) => "varint",
            WireValue::Fixed64(_) => "64-bit",
            WireValue::Len(_) => "length-delimited",
            WireValue::Fixed32(_) => "32-bit",
        }
    }
}

/// The largest field number protobuf allows (2^29 - 1).
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// A cursor over encoded data.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    /// Whether all data has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.data.len() {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }

    /// A base-128 varint (at most 10 bytes; bits beyond 64 are dropped, as upstream does).
    pub fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some((&byte, rest)) = self.data.split_first() else {
                return Err(WireError::Truncated);
            };
            self.data = rest;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::VarintTooLong)
    }

    /// A little-endian 64-bit value.
    pub fn fixed64(&mut self) -> Result<u64, WireError> {
        let bytes: [u8; 8] = self.take(8)?.try_into().map_err(|_| WireError::Truncated)?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// A little-endian 32-bit value.
    pub fn fixed32(&mut self) -> Result<u32, WireError> {
        let bytes: [u8; 4] = self.take(4)?.try_into().map_err(|_| WireError::Truncated)?;
        Ok(u32::from_le_bytes(bytes))
    }

    /// A length-prefixed payload.
    pub fn len_delimited(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| WireError::Truncated)?;
        self.take(len)
    }

    /// The next field: its number and value.
    pub fn field(&mut self) -> Result<(u32, WireValue<'a>), WireError> {
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 || number > MAX_FIELD_NUMBER {
            return Err(WireError::FieldNumber(number));
        }
        let value = match key & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => WireValue::Fixed64(self.fixed64()?),
            2 => WireValue::Len(self.len_delimited()?),
            5 => WireValue::Fixed32(self.fixed32()?),
            other => return Err(WireError::WireType(other as u8)),
        };
        // The check above keeps the number within 29 bits.
        Ok((number as u32, value))
    }
}

/// The last value of field `number` in a message (proto semantics: a repeated singular field
/// takes its last occurrence), for the small well-known messages read field by field.
pub fn last_field(data: &[u8], number: u32) -> Result<Option<WireValue<'_>>, WireError> {
    let mut reader = Reader::new(data);
    let mut found = None;
    while !reader.is_empty() {
        let (n, value) = reader.field()?;
        if n == number {
            found = Some(value);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_of_every_length() {
        assert_eq!(Reader::new(&[0]).varint(), Ok(0));
        assert_eq!(Reader::new(&[0x96, 0x01]).varint(), Ok(150));
        // -1 as int64: ten bytes, all bits set.
        let minus_one = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Reader::new(&minus_one).varint(), Ok(u64::MAX));
        assert_eq!(Reader::new(&[0x80]).varint(), Err(WireError::Truncated));
        assert_eq!(
            Reader::new(&[0xff; 11]).varint(),
            Err(WireError::VarintTooLong)
        );
    }

    #[test]
    fn fields_of_each_wire_type() {
        let data = [
            0x08, 0x2a, // 1: varint 42
            0x11, 1, 0, 0, 0, 0, 0, 0, 0, // 2: fixed64 1
            0x1a, 0x02, b'h', b'i', // 3: "hi"
            0x25, 2, 0, 0, 0, // 4: fixed32 2
        ];
        let mut r = Reader::new(&data);
        assert_eq!(r.field(), Ok((1, WireValue::Varint(42))));
        assert_eq!(r.field(), Ok((2, WireValue::Fixed64(1))));
        assert_eq!(r.field(), Ok((3, WireValue::Len(b"hi"))));
        assert_eq!(r.field(), Ok((4, WireValue::Fixed32(2))));
        assert!(r.is_empty());
    }

    #[test]
    fn malformed_keys_and_lengths() {
        assert_eq!(
            Reader::new(&[0x1a, 0x05, b'h']).field(),
            Err(WireError::Truncated)
        );
        assert_eq!(Reader::new(&[0x0b]).field(), Err(WireError::WireType(3)));
        assert_eq!(Reader::new(&[0x0e]).field(), Err(WireError::WireType(6)));
        assert_eq!(
            Reader::new(&[0x00, 0x00]).field(),
            Err(WireError::FieldNumber(0))
        );
        assert_eq!(
            Reader::new(&[0x11, 1, 2, 3]).field(),
            Err(WireError::Truncated)
        );
        // A length beyond the data, encoded as a huge varint.
        let huge = [
            0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert_eq!(Reader::new(&huge).field(), Err(WireError::Truncated));
    }

    #[test]
    fn last_field_takes_the_last_occurrence() {
        let data = [0x08, 0x01, 0x10, 0x05, 0x08, 0x02];
        assert_eq!(last_field(&data, 1), Ok(Some(WireValue::Varint(2))));
        assert_eq!(last_field(&data, 3), Ok(None));
        assert_eq!(last_field(&[0x08], 1), Err(WireError::Truncated));
    }
}
