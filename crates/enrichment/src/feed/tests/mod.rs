//! The feed follower's rules (`docs/design.md`, 1.2 finding new change files).

mod look_back_listing;
mod shared_feed;
