//! Agent proxies: `socks5://[user[:password]@]host:port`, the one form MTProto clients support
//! here (grammers' `proxy` feature). The address can hold a password, so it is checked strictly
//! (nothing after the port: no path, query, fragment or space that a URL parser downstream would
//! read differently and quote back in an error) and shown only masked.

/// What `mask_proxy` puts in place of a password (or of a user name that has no password: a
/// token-style proxy credential).
pub const MASK: &str = "***";

/// Why a proxy address was refused. The address itself is never quoted: it may hold a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProxyError {
    #[error(
        "is not a socks5://[user:password@]host:port proxy address (no path, query or spaces; write @ and : in a password as %40 and %3A)"
    )]
    Invalid,
    #[error("holds the masked password (***); type the password again")]
    Masked,
}

pub(crate) fn check_proxy(proxy: &str) -> Result<(), ProxyError> {
    const INVALID: ProxyError = ProxyError::Invalid;
    let rest = proxy.strip_prefix("socks5://").ok_or(INVALID)?;
    let (credentials, host_port) = match rest.rsplit_once('@') {
        Some((credentials, host_port)) => (Some(credentials), host_port),
        None => (None, rest),
    };
    if let Some(credentials) = credentials {
        let (user, password) = credentials
            .split_once(':')
            .map_or((credentials, None), |(user, password)| {
                (user, Some(password))
            });
        if !is_userinfo(user) || !password.is_none_or(is_userinfo) {
            return Err(INVALID);
        }
        if password.unwrap_or(user) == MASK {
            return Err(ProxyError::Masked);
        }
    }
    let (host, port) = host_port.rsplit_once(':').ok_or(INVALID)?;
    let port_ok = !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p > 0);
    if !port_ok || !is_host(host) {
        return Err(INVALID);
    }
    Ok(())
}

/// RFC 3986 user information without `:` (the separator) or `@`: unreserved characters,
/// sub-delimiters and percent-escapes.
fn is_userinfo(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let escaped = bytes.get(index + 1..index + 3);
                if !escaped.is_some_and(|pair| pair.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                index += 3;
                continue;
            }
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => {}
            b'-' | b'.' | b'_' | b'~' => {}
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => {}
            _ => return false,
        }
        index += 1;
    }
    true
}

/// A host name (letters, digits, `-` and `.`), an IPv4 address, or an IPv6 address in brackets.
fn is_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The proxy with its secret replaced by [`MASK`]: `socks5://user:secret@host:1080` becomes
/// `socks5://user:***@host:1080`, and a user name without a password (`socks5://TOKEN@host:1080`,
/// where the name is the secret) becomes `socks5://***@host:1080`. Text that does not look like
/// a proxy address is masked whole, since it may be a mistyped one.
pub fn mask_proxy(proxy: &str) -> String {
    let Some((scheme, rest)) = proxy.split_once("://") else {
        return MASK.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:{MASK}@{host}"),
            None => format!("{scheme}://{MASK}@{host}"),
        },
        None => proxy.to_owned(),
    }
}

/// Masks every `scheme://credentials@` in free text (an error message from a library that
/// quoted a proxy address), leaving the rest as it is.
pub fn mask_urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends at the first character a URL's authority cannot hold.
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '/' | '?' | '#' | '"' | '\'' | ','))
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rsplit_once('@') {
            Some((_, host)) => {
                out.push_str(MASK);
                out.push('@');
                out.push_str(host);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_socks5_address_is_a_proxy() {
        for good in [
            "socks5://127.0.0.1:1080",
            "socks5://proxy.example.com:1080",
            "socks5://user:p%40ss%3Aw0rd@proxy-1.example.com:65535",
            "socks5://token-only@10.0.0.1:9050",
            "socks5://[2001:db8::1]:1080",
            "socks5://u:a!$&'()*+,;=b@h:1",
        ] {
            assert_eq!(check_proxy(good), Ok(()), "{good}");
        }
        for bad in [
            "http://127.0.0.1:1080",
            "socks5://127.0.0.1",
            "socks5://127.0.0.1:0",
            "socks5://127.0.0.1:70000",
            "socks5://127.0.0.1:1080/",
            "socks5://u:secret@host?x:1080",
            "socks5://u:secret@host:1080?x",
            "socks5://u:secret@host#frag:1080",
            "socks5://u:sec ret@host:1080",
            "socks5://u:secret@host:1080 ",
            "socks5://u:sec\tret@host:1080",
            "socks5://u:se/cret@host:1080",
            "socks5://u:se\\cret@host:1080",
            "socks5://u:se%zzcret@host:1080",
            "socks5://u:se:cret@host:1080",
            "socks5://host_name:1080",
            "socks5://-host:1080",
            "socks5://[not-v6]:1080",
            "socks5://:1080",
        ] {
            assert!(check_proxy(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_masked_password_is_never_taken_for_a_password() {
        assert!(check_proxy("socks5://user:***@host:1080").is_err());
        assert!(check_proxy("socks5://***@host:1080").is_err());
        assert_eq!(
            check_proxy("socks5://user:***@host:1080"),
            Err(ProxyError::Masked)
        );
    }

    #[test]
    fn masking_hides_the_password_or_a_lone_user_name() {
        assert_eq!(
            mask_proxy("socks5://user:secret@host:1080"),
            "socks5://user:***@host:1080"
        );
        assert_eq!(
            mask_proxy("socks5://SECRET@host:1080"),
            "socks5://***@host:1080"
        );
        assert_eq!(mask_proxy("socks5://host:1080"), "socks5://host:1080");
        assert_eq!(mask_proxy("user:secret@host"), "***");
        assert_eq!(
            mask_proxy("socks5://user:p@ss@host:1080"),
            "socks5://user:***@host:1080"
        );
    }

    #[test]
    fn urls_quoted_in_messages_lose_their_credentials() {
        assert_eq!(
            mask_urls_in("proxy port is missing from url: socks5://u:secret@host?x:1080"),
            "proxy port is missing from url: socks5://***@host?x:1080"
        );
        assert_eq!(
            mask_urls_in("a socks5://TOKEN@h:1 and http://plain.example/x"),
            "a socks5://***@h:1 and http://plain.example/x"
        );
        assert_eq!(mask_urls_in("no url here"), "no url here");
    }
}
