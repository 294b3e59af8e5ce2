//! Overlay tests: the plan ([`plan`]), make-before-break transitions ([`transition`]), and the
//! inputs and MAC ([`input`]).
mod input;
mod plan;
mod transition;
