//! What BIRD says about the sessions, as `calicoctl node status` shows it.
use crate::api::nodestate::{BGPPeerStatusEntry, PeerType};

/// The BGP sessions in `birdc show protocols` output, plain or `-v` (numeric reply codes), also
/// with `all` (detail lines are skipped). Only `Global_`, `Node_` and `Mesh_` protocols are kept,
/// as calicoctl does; the address is the name's suffix with `_` turned back into `.`, so a port
/// suffix shows as `a.b.c.d.port.N`. BIRD's `.mmm` milliseconds are dropped from the SINCE time.
pub fn parse_birdc_protocols(output: &str) -> Vec<BGPPeerStatusEntry> {
    output
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = strip_reply_code(line).split_whitespace().collect();
            if fields.len() < 5 || fields[1] != "BGP" {
                return None;
            }
            let (prefix, rest) = fields[0].split_once('_')?;
            let peer_type = PeerType::from_protocol_prefix(prefix)?;
            if rest.is_empty() {
                return None;
            }
            let since = match fields[4].split_once('.') {
                Some((t, ms)) if ms.chars().all(|c| c.is_ascii_digit()) => t,
                _ => fields[4],
            };
            let info = fields[5..].join(" ");
            Some(BGPPeerStatusEntry {
                peer_ip: rest.replace('_', "."),
                peer_type,
                state: fields[3].to_string(),
                since: Some(since.to_string()),
                info: (!info.is_empty()).then_some(info),
            })
        })
        .collect()
}

/// Drops a `birdc -v` reply code (`1002-`, `0001 `) or the single space of a continuation line.
fn strip_reply_code(line: &str) -> &str {
    let b = line.as_bytes();
    if b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) && (b[4] == b'-' || b[4] == b' ') {
        &line[5..]
    } else {
        line
    }
}

/// Cells wider than this wrap at spaces, as calicoctl's table writer does.
const MAX_CELL_WIDTH: usize = 30;

fn wrap(cell: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for word in cell.split(' ') {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > MAX_CELL_WIDTH {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    lines.push(cur);
    lines
}

/// The peer table of `calicoctl node status` (borders, centred header, left-aligned cells).
pub fn render_peer_table(entries: &[BGPPeerStatusEntry]) -> String {
    const HEADER: [&str; 5] = ["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"];
    let rows: Vec<[Vec<String>; 5]> = entries
        .iter()
        .map(|e| {
            [
                wrap(&e.peer_ip),
                wrap(e.peer_type.as_str()),
                wrap(&e.state),
                wrap(e.since.as_deref().unwrap_or("")),
                wrap(e.info.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    let mut widths = HEADER.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            for l in cell {
                *w = (*w).max(l.chars().count());
            }
        }
    }
    let border: String = widths.iter().fold("+".to_string(), |mut s, w| {
        s.push_str(&"-".repeat(w + 2));
        s.push('+');
        s
    });
    let mut out = format!("{border}\n|");
    for (h, w) in HEADER.iter().zip(widths) {
        let pad = w - h.chars().count();
        let left = pad / 2;
        out.push_str(&format!(
            " {}{h}{} |",
            " ".repeat(left),
            " ".repeat(pad - left)
        ));
    }
    out.push_str(&format!("\n{border}\n"));
    for row in &rows {
        let height = row.iter().map(Vec::len).max().unwrap_or(1);
        for i in 0..height {
            out.push('|');
            for (cell, w) in row.iter().zip(widths) {
                let text = cell.get(i).map(String::as_str).unwrap_or("");
                out.push_str(&format!(" {text:<w$} |"));
            }
            out.push('\n');
        }
    }
    out.push_str(&border);
    out.push('\n');
    out
}

/// One family's section of `calicoctl node status`: `IPv4 BGP status`, then the table or
/// `No IPv4 peers found.`, then a blank line.
pub fn render_bgp_status(family: &str, entries: &[BGPPeerStatusEntry]) -> String {
    let body = if entries.is_empty() {
        format!("No {family} peers found.\n")
    } else {
        render_peer_table(entries)
    };
    format!("{family} BGP status\n{body}\n")
}
