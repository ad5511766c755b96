// The persistent attention kernels' work-tile order (gpu_model/flash_tile_order.hpp): every
// tile of every head comes out exactly once, heaviest first inside each L2 section, sections of
// consecutive heads sized by the bytes a head's loop reads, the last one partial.
#include "fp8scope/gpu_model/flash_tile_order.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <vector>

namespace fp8scope {
namespace {

using gpu_model::flash::tile_order;
using gpu_model::flash::TileOrder;

void expect_each_tile_once_heaviest_first(const TileOrder& o) {
  std::vector<int> seen(std::size_t(o.tiles()), 0);
  int prev_rank = -1, prev_section = -1;
  for (int t = 0; t < o.tiles(); ++t) {
    int rank = -1, head = -1;
    o.at(t, rank, head);
    ASSERT_GE(rank, 0) << "tile " << t;
    ASSERT_LT(rank, o.per_head) << "tile " << t;
    ASSERT_GE(head, 0) << "tile " << t;
    ASSERT_LT(head, o.heads) << "tile " << t;
    ++seen[std::size_t(head) * std::size_t(o.per_head) + std::size_t(rank)];
    const int section = head / o.section;
    ASSERT_GE(section, prev_section) << "sections come in order (tile " << t << ")";
    if (section == prev_section) EXPECT_GE(rank, prev_rank) << "lighter tiles after heavier ones in a section (tile " << t << ")";
    prev_section = section;
    prev_rank = rank;
  }
  for (std::size_t i = 0; i < seen.size(); ++i)
    EXPECT_EQ(seen[i], 1) << "head " << i / std::size_t(o.per_head) << " rank " << i % std::size_t(o.per_head);
}

TEST(FlashTileOrder, EveryTileOnceHeaviestFirstInEachSection) {
  for (int per_head : {1, 2, 8, 16})
    for (int heads : {1, 5, 48, 192})
      for (int section : {1, 3, 16, 32, 64, 192}) {
        if (section > heads) continue;
        SCOPED_TRACE(testing::Message() << per_head << " tiles a head, " << heads << " heads, sections of " << section);
        expect_each_tile_once_heaviest_first(TileOrder{per_head, heads, section});
      }
}

TEST(FlashTileOrder, SectionsHoldWhatFitsInTheL2Share) {
  // GPT-2 124M's forward at T=1024: K and V of a head of 64 are 256 KB, 64 heads fit in 16 MB.
  EXPECT_EQ(tile_order(8, 192, std::size_t(1024) * 64 * 4).section, 64);
  // Heads of 128: 512 KB a head, 32 of them.
  EXPECT_EQ(tile_order(8, 96, std::size_t(1024) * 128 * 4).section, 32);
  // Fewer heads than fit: one section of all of them; a head larger than the share: one a section.
  EXPECT_EQ(tile_order(8, 12, std::size_t(1024) * 64 * 4).section, 12);
  EXPECT_EQ(tile_order(8, 12, gpu_model::flash::kTileSectionBytes * 2).section, 1);
  // The last section is partial (48 heads in sections of 32): its 16 heads each get all ranks.
  const TileOrder o = tile_order(8, 48, std::size_t(1024) * 128 * 4);
  ASSERT_EQ(o.section, 32);
  int rank = -1, head = -1;
  o.at(32 * 8, rank, head);  // the second section's first tile
  EXPECT_EQ(rank, 0);
  EXPECT_EQ(head, 32);
  o.at(32 * 8 + 16, rank, head);  // after its 16 heads' heaviest tiles, their next rank
  EXPECT_EQ(rank, 1);
  EXPECT_EQ(head, 32);
}

}  // namespace
}  // namespace fp8scope
