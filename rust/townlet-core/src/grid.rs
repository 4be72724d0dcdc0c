//! The town's space: a bounded grid of walls and floor, objects on tiles, and per-object
//! distance fields so that a navigation step costs O(1).

use crate::ids::NONE;
use std::collections::VecDeque;

pub const UNREACHABLE: u16 = u16::MAX;

/// Moves in action order: north, east, south, west (y grows downwards).
pub const DIRS: [(i32, i32); 4] = [(0, -1), (1, 0), (0, 1), (-1, 0)];

#[derive(Debug, Clone)]
pub struct Grid {
    pub width: i32,
    pub height: i32,
    /// True where an agent may stand: floor without an object.
    walkable: Vec<bool>,
    wall: Vec<bool>,
    /// Object index on each tile, or -1.
    object_at: Vec<i32>,
}

impl Grid {
    /// Parse an ASCII layout (`#` wall, `.` floor). Rows may not differ in length.
    pub fn parse(layout: &str) -> Result<Self, String> {
        let rows: Vec<&str> = layout
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .collect();
        if rows.is_empty() {
            return Err("layout is empty".into());
        }
        let width = rows[0].chars().count();
        let mut wall = Vec::with_capacity(width * rows.len());
        for (y, row) in rows.iter().enumerate() {
            if row.chars().count() != width {
                return Err(format!(
                    "layout row {} has {} columns, expected {}",
                    y + 1,
                    row.chars().count(),
                    width
                ));
            }
            for (x, c) in row.chars().enumerate() {
                match c {
                    '#' => wall.push(true),
                    '.' => wall.push(false),
                    other => {
                        return Err(format!(
                            "layout row {} column {}: unknown tile {:?} (use '#' or '.')",
                            y + 1,
                            x + 1,
                            other
                        ))
                    }
                }
            }
        }
        let n = wall.len();
        Ok(Self {
            width: width as i32,
            height: rows.len() as i32,
            walkable: wall.iter().map(|w| !w).collect(),
            wall,
            object_at: vec![NONE; n],
        })
    }

    #[inline]
    pub fn in_bounds(&self, x: i32, y: i32) -> bool {
        x >= 0 && y >= 0 && x < self.width && y < self.height
    }

    #[inline]
    pub fn idx(&self, x: i32, y: i32) -> usize {
        (y * self.width + x) as usize
    }

    #[inline]
    pub fn walkable(&self, x: i32, y: i32) -> bool {
        self.in_bounds(x, y) && self.walkable[self.idx(x, y)]
    }

    pub fn is_wall(&self, x: i32, y: i32) -> bool {
        !self.in_bounds(x, y) || self.wall[self.idx(x, y)]
    }

    pub fn object_at(&self, x: i32, y: i32) -> i32 {
        if self.in_bounds(x, y) {
            self.object_at[self.idx(x, y)]
        } else {
            NONE
        }
    }

    pub fn tiles(&self) -> usize {
        (self.width * self.height) as usize
    }

    /// Put object `index` on a floor tile; the tile stops being walkable.
    pub fn place_object(&mut self, index: usize, x: i32, y: i32) -> Result<(), String> {
        if !self.in_bounds(x, y) {
            return Err(format!(
                "position [{x}, {y}] is outside the {}x{} layout",
                self.width, self.height
            ));
        }
        let i = self.idx(x, y);
        if self.wall[i] {
            return Err(format!("position [{x}, {y}] is a wall"));
        }
        if self.object_at[i] >= 0 {
            return Err(format!("position [{x}, {y}] already holds another object"));
        }
        self.object_at[i] = index as i32;
        self.walkable[i] = false;
        Ok(())
    }

    /// Breadth-first distances to the tiles from which an object at (ox, oy) is in range
    /// (the walkable 4-neighbours, distance 0).
    pub fn distance_field(&self, ox: i32, oy: i32) -> Vec<u16> {
        let sources: Vec<(i32, i32)> = DIRS.iter().map(|(dx, dy)| (ox + dx, oy + dy)).collect();
        self.bfs(&sources)
    }

    /// Breadth-first distances to the walkable tile (x, y) itself.
    pub fn distance_to_tile(&self, x: i32, y: i32) -> Vec<u16> {
        self.bfs(&[(x, y)])
    }

    fn bfs(&self, sources: &[(i32, i32)]) -> Vec<u16> {
        let mut dist = vec![UNREACHABLE; self.tiles()];
        let mut queue = VecDeque::new();
        for &(x, y) in sources {
            if self.walkable(x, y) {
                let i = self.idx(x, y);
                dist[i] = 0;
                queue.push_back((x, y));
            }
        }
        while let Some((x, y)) = queue.pop_front() {
            let d = dist[self.idx(x, y)];
            for (dx, dy) in DIRS {
                let (nx, ny) = (x + dx, y + dy);
                if self.walkable(nx, ny) {
                    let j = self.idx(nx, ny);
                    if dist[j] == UNREACHABLE {
                        dist[j] = d + 1;
                        queue.push_back((nx, ny));
                    }
                }
            }
        }
        dist
    }

    /// Walkable tiles within Manhattan distance 1 of (x, y), in direction order.
    pub fn neighbours(&self, x: i32, y: i32) -> impl Iterator<Item = (i32, i32)> + '_ {
        DIRS.iter()
            .map(move |(dx, dy)| (x + dx, y + dy))
            .filter(|&(nx, ny)| self.walkable(nx, ny))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = "#####\n#...#\n#.#.#\n#...#\n#####\n";

    #[test]
    fn parses_and_rejects() {
        let g = Grid::parse(MAP).unwrap();
        assert_eq!((g.width, g.height), (5, 5));
        assert!(g.walkable(1, 1));
        assert!(!g.walkable(2, 2));
        assert!(!g.walkable(-1, 0));
        assert!(Grid::parse("##\n#").unwrap_err().contains("row 2"));
        assert!(Grid::parse("#x#").unwrap_err().contains("unknown tile"));
    }

    #[test]
    fn distance_field_routes_around_walls() {
        let mut g = Grid::parse(MAP).unwrap();
        g.place_object(0, 3, 3).unwrap();
        assert!(!g.walkable(3, 3));
        let d = g.distance_field(3, 3);
        assert_eq!(d[g.idx(3, 2)], 0);
        assert_eq!(d[g.idx(2, 3)], 0);
        assert_eq!(d[g.idx(1, 1)], 3);
        assert_eq!(d[g.idx(0, 0)], UNREACHABLE);
        assert!(g.place_object(1, 3, 3).is_err());
        assert!(g.place_object(1, 0, 0).is_err());
    }
}
