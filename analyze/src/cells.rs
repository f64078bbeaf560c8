//! The rows of a differing answer, side by side: rendered within bounds, and the cells that
//! differ marked.
//!
//! Runs keep the first rows of some answers ([`RowSample`]); an example of a difference shows
//! both sides' where they were kept. [`render`] turns a sample's values into text, at most
//! [`ROWS_SHOWN`] rows and [`BYTES_SHOWN`] bytes of text per side (the first row whatever its
//! size). [`mark`] finds the cells that differ: row by row where the statement asks for an
//! order, otherwise after pairing the rows both sides have alike (a multiset), so rows in
//! another order are not marked. Rows with no counterpart are marked whole.

use std::collections::HashMap;

use myrr_recording::{render_value, RowSample};

/// Rows shown of one side of an example.
pub const ROWS_SHOWN: usize = 20;
/// Bytes of rendered cells shown of one side of an example.
pub const BYTES_SHOWN: usize = 4096;

/// A sample's rows as text, bounded; and how many rows were left out (by the run or here).
pub fn render(sample: &RowSample) -> (Vec<Vec<String>>, u64) {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut bytes = 0;
    for row in &sample.rows {
        if out.len() >= ROWS_SHOWN {
            break;
        }
        let cells: Vec<String> = row.iter().map(render_value).collect();
        let size: usize = cells.iter().map(String::len).sum();
        if !out.is_empty() && bytes + size > BYTES_SHOWN {
            break;
        }
        bytes += size;
        out.push(cells);
    }
    let left = sample.rows.len() as u64 - out.len() as u64 + sample.rows_left_out;
    (out, left)
}

/// The cells that differ, as `[row, column]`, on the baseline's side and on the candidate's.
/// `ordered`: the statement asks for an order, so rows are compared by position.
pub fn mark(
    base: &[Vec<String>],
    cand: &[Vec<String>],
    ordered: bool,
) -> (Vec<[u32; 2]>, Vec<[u32; 2]>) {
    let (mut left_b, mut left_c): (Vec<usize>, Vec<usize>) = if ordered {
        ((0..base.len()).collect(), (0..cand.len()).collect())
    } else {
        // Rows both sides have alike pair off first, wherever they are.
        let mut by_row: HashMap<&Vec<String>, Vec<usize>> = HashMap::new();
        for (i, r) in base.iter().enumerate().rev() {
            by_row.entry(r).or_default().push(i);
        }
        let mut matched_b = vec![false; base.len()];
        let mut left_c = Vec::new();
        for (j, r) in cand.iter().enumerate() {
            match by_row.get_mut(r).and_then(Vec::pop) {
                Some(i) => matched_b[i] = true,
                None => left_c.push(j),
            }
        }
        let left_b = (0..base.len()).filter(|&i| !matched_b[i]).collect();
        (left_b, left_c)
    };
    let (mut mb, mut mc) = (Vec::new(), Vec::new());
    // The rows left pair in order; their differing cells are marked.
    let pairs = left_b.len().min(left_c.len());
    for (&i, &j) in left_b.iter().zip(&left_c) {
        let (rb, rc) = (&base[i], &cand[j]);
        for k in 0..rb.len().max(rc.len()) {
            if rb.get(k) != rc.get(k) {
                if k < rb.len() {
                    mb.push([i as u32, k as u32]);
                }
                if k < rc.len() {
                    mc.push([j as u32, k as u32]);
                }
            }
        }
    }
    // Rows with no counterpart: every cell.
    for i in left_b.drain(pairs..) {
        mb.extend((0..base[i].len()).map(|k| [i as u32, k as u32]));
    }
    for j in left_c.drain(pairs..) {
        mc.extend((0..cand[j].len()).map(|k| [j as u32, k as u32]));
    }
    (mb, mc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use myrr_recording::{SampleReason, Value};

    fn rows(r: &[&[&str]]) -> Vec<Vec<String>> {
        r.iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect()
    }

    #[test]
    fn a_changed_cell_is_marked_on_both_sides() {
        let b = rows(&[&["1", "pen"], &["2", "lamp"]]);
        let c = rows(&[&["1", "pen"], &["2", "LAMP"]]);
        assert_eq!(mark(&b, &c, false), (vec![[1, 1]], vec![[1, 1]]));
        assert_eq!(mark(&b, &c, true), (vec![[1, 1]], vec![[1, 1]]));
    }

    #[test]
    fn rows_in_another_order_are_marked_only_when_the_order_matters() {
        let b = rows(&[&["1", "a"], &["2", "b"]]);
        let c = rows(&[&["2", "b"], &["1", "a"]]);
        assert_eq!(mark(&b, &c, false), (vec![], vec![]));
        let (mb, mc) = mark(&b, &c, true);
        assert_eq!(mb, vec![[0, 0], [0, 1], [1, 0], [1, 1]]);
        assert_eq!(mc, mb);
    }

    #[test]
    fn unordered_rows_pair_off_before_the_changed_one_is_compared() {
        let b = rows(&[&["1", "a"], &["2", "b"], &["3", "c"]]);
        let c = rows(&[&["3", "c"], &["2", "X"], &["1", "a"]]);
        assert_eq!(mark(&b, &c, false), (vec![[1, 1]], vec![[1, 1]]));
    }

    #[test]
    fn a_row_without_counterpart_is_marked_whole() {
        let b = rows(&[&["1", "a"]]);
        let c = rows(&[&["1", "a"], &["2", "b"]]);
        assert_eq!(mark(&b, &c, false), (vec![], vec![[1, 0], [1, 1]]));
        // Duplicates count: a second identical row is a row without counterpart.
        let c = rows(&[&["1", "a"], &["1", "a"]]);
        assert_eq!(mark(&b, &c, false), (vec![], vec![[1, 0], [1, 1]]));
        // Another column count: the extra cells are marked.
        let c = rows(&[&["1", "a", "z"]]);
        assert_eq!(mark(&b, &c, false), (vec![], vec![[0, 2]]));
    }

    fn sample(rows: Vec<Vec<Value>>, left_out: u64) -> RowSample {
        RowSample {
            session: 1,
            seq: 1,
            clone: 0,
            at_us: 0,
            why: SampleReason::FirstOfShape,
            rows,
            rows_left_out: left_out,
            cells_cut: 0,
        }
    }

    #[test]
    fn rendering_is_bounded_in_rows_and_bytes() {
        let s = sample(
            (0..30).map(|i| vec![Value::Int(i), Value::Null]).collect(),
            5,
        );
        let (r, left) = render(&s);
        assert_eq!(r.len(), ROWS_SHOWN);
        assert_eq!(r[3], vec!["3".to_string(), "NULL".to_string()]);
        assert_eq!(left, 10 + 5);

        // Binary values render in hex, twice their size: the text bound holds.
        let blob = Value::Bytes(vec![0xff; 256]);
        let s = sample((0..20).map(|_| vec![blob.clone()]).collect(), 0);
        let (r, left) = render(&s);
        let shown: usize = r.iter().flatten().map(String::len).sum();
        assert!(shown <= BYTES_SHOWN, "{shown}");
        assert_eq!(r.len(), BYTES_SHOWN / 514);
        assert_eq!(left, 20 - r.len() as u64);

        // A first row larger than the bound is shown alone.
        let s = sample(vec![vec![blob.clone(); 10], vec![Value::Int(1)]], 0);
        let (r, left) = render(&s);
        assert_eq!((r.len(), left), (1, 1));
    }
}
